// Package cursor seals list positions into opaque, tamper-evident tokens.
package cursor
