// Package lifecycle holds the control plane's operations (publish intents,
// registration, lifecycle transitions, reads) over narrow ports, with
// idempotency and audit decided here and committed by the Store in one
// transaction per mutation.
package lifecycle
