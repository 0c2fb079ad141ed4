// Package httpapi turns API Gateway HTTP API (payload 2.0) events into
// lifecycle operations and back: the route table, headers, identity claims,
// strict body decoding, idempotency fingerprints and the error envelope.
package httpapi
