// Package ocireg reads OCI registries (manifests, blobs, referrers) with go-containerregistry as the signature.Source for signature verification.
package ocireg
