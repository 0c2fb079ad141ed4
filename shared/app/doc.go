// Package app wires a function: configuration from the environment, AWS
// clients built once at init with no network call, and the route's handler.
package app
