// Package publisher is the outbox relay: it reads audit rows from the
// table's stream and puts one EventBridge event per row on the project bus,
// at least once, reporting what it could not deliver so nothing committed is lost.
package publisher
