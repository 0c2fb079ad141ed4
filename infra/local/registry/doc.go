// Package registry is the local cloud's OCI registry with the ECR JSON API calls the project uses served over the same store.
package registry
