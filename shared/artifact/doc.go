// Package artifact is the domain of the app artifact control plane: artifacts,
// publish intents, the lifecycle and trust state machines, input validation,
// channel policy and the error codes every layer speaks. It imports no AWS and
// no HTTP code.
package artifact
