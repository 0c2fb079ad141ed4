// Package signature verifies cosign key-based signatures of OCI artifacts (legacy .sig tags and OCI 1.1 sigstore-bundle referrers) with the project's trusted ECDSA P-256 keys.
package signature
