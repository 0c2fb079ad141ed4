// Package verify is the asynchronous verifier: on a registered or
// re-verification event it checks the artifact's digest in the registry
// against the project's policy and records verified or failed_verification.
package verify
