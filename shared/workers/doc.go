// Package workers wires the asynchronous functions (the outbox publisher,
// the verifier, the push registrar), apart from the HTTP ones so that route
// binaries do not link the registry and signature code.
package workers
