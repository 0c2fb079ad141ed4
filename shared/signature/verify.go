package signature

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Descriptor is an OCI content descriptor as listed by the referrers API.
type Descriptor struct {
	MediaType    string
	ArtifactType string
	Digest       string
	Size         int64
	Annotations  map[string]string
}

// Source is the registry access verification needs (one interface).
// repo is the repository path inside the registry (e.g. "apps/demo").
type Source interface {
	// ManifestByTag returns the manifest bytes at tag; ErrNotFound when absent.
	ManifestByTag(ctx context.Context, repo, tag string) ([]byte, error)
	// Manifest returns the manifest bytes with digest; ErrNotFound when absent.
	Manifest(ctx context.Context, repo, digest string) ([]byte, error)
	// Referrers lists the manifests whose subject is digest and whose
	// artifactType is artifactType (all of them when artifactType is "").
	// No referrers is an empty list, not an error.
	Referrers(ctx context.Context, repo, digest, artifactType string) ([]Descriptor, error)
	// Blob returns the blob with digest; ErrNotFound when absent.
	Blob(ctx context.Context, repo, digest string) ([]byte, error)
}

var (
	// ErrNotFound is returned by a Source when a manifest, tag or blob does
	// not exist.
	ErrNotFound = errors.New("signature: not found in registry")
	// ErrMissing means no signature of either format exists for the digest.
	ErrMissing = errors.New("signature_missing")
	// ErrInvalid means signatures exist but none verifies, with a trusted
	// key, as a signature of the digest.
	ErrInvalid = errors.New("signature_invalid")
)

// maxSignatureBlob bounds the size of a payload or bundle blob Verify will
// fetch. cosign payloads are a few hundred bytes, bundles a few KiB.
const maxSignatureBlob = 4 << 20

// Verify looks for a valid signature of digest ("sha256:<hex>") in repo by
// one of keys, in both cosign formats:
//
//   - legacy: the manifest at tag sha256-<hex>.sig, each simple-signing layer
//     carrying its payload as the blob and the base64 ASN.1 ECDSA signature
//     over sha256(payload) in the dev.cosignproject.cosign/signature
//     annotation; the payload must name digest in
//     critical.image.docker-manifest-digest and have critical.type
//     "cosign container image signature";
//   - OCI 1.1 referrers: a manifest with subject digest and artifactType
//     application/vnd.dev.sigstore.bundle.v0.3+json whose bundle layer holds
//     a DSSE envelope of an in-toto statement v1 (predicateType
//     https://sigstore.dev/cosign/sign/v1) with a subject of digest, signed
//     over the DSSE PAE.
//
// Every blob and referrer manifest is checked against the digest (and size)
// it was reached by. Key hints and DSSE keyids are ignored; every trusted key
// is tried against every signature.
//
// It returns the KeyID of the key that verified. It returns ErrMissing when
// no signature of either format exists, ErrInvalid when signatures exist but
// none verifies (wrong key, tampered payload, another digest, malformed).
// Both are returned unwrapped. Any other error is a dependency or
// configuration error the caller should retry: a Source error other than
// ErrNotFound is never turned into ErrMissing or ErrInvalid, unless a valid
// signature was found anyway.
func Verify(ctx context.Context, src Source, repo, digest string, keys []Key) (keyID string, err error) {
	hexDigest, err := sha256Hex(digest)
	if err != nil {
		return "", err
	}
	if len(keys) == 0 {
		return "", errors.New("signature: no trusted keys configured")
	}
	for _, k := range keys {
		if k.Public == nil || k.Public.Curve != elliptic.P256() {
			return "", fmt.Errorf("signature: trusted key %q is not an ECDSA P-256 public key", k.KeyID)
		}
	}
	v := &verifier{src: src, repo: repo, digest: digest, hex: hexDigest, keys: keys}
	if id, ok := v.legacy(ctx); ok {
		return id, nil
	}
	if id, ok := v.referrers(ctx); ok {
		return id, nil
	}
	switch {
	case v.transient != nil:
		return "", v.transient
	case v.found:
		return "", ErrInvalid
	default:
		return "", ErrMissing
	}
}

type verifier struct {
	src    Source
	repo   string
	digest string
	hex    string
	keys   []Key

	found     bool  // a signature of either format exists
	transient error // first Source error other than ErrNotFound
}

func (v *verifier) fail(err error) {
	if v.transient == nil {
		v.transient = err
	}
}

// legacy checks the layers of the sha256-<hex>.sig manifest.
func (v *verifier) legacy(ctx context.Context) (string, bool) {
	raw, err := v.src.ManifestByTag(ctx, v.repo, "sha256-"+v.hex+".sig")
	if errors.Is(err, ErrNotFound) {
		return "", false
	}
	if err != nil {
		v.fail(fmt.Errorf("signature: read legacy signature manifest: %w", err))
		return "", false
	}
	v.found = true
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", false
	}
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType {
			continue
		}
		sig, ok := decodeBase64(l.Annotations[SignatureAnnotation])
		if !ok || len(sig) == 0 {
			continue
		}
		payload, ok := v.blob(ctx, l)
		if !ok || !v.legacyClaims(payload) {
			continue
		}
		h := sha256.Sum256(payload)
		if id, ok := v.match(h[:], sig); ok {
			return id, true
		}
	}
	return "", false
}

func (v *verifier) legacyClaims(payload []byte) bool {
	var p simpleSigning
	if err := json.Unmarshal(payload, &p); err != nil {
		return false
	}
	return p.Critical.Type == SimpleSigningType && p.Critical.Image.DockerManifestDigest == v.digest
}

// referrers checks the sigstore bundles referring to the digest.
func (v *verifier) referrers(ctx context.Context) (string, bool) {
	descs, err := v.src.Referrers(ctx, v.repo, v.digest, BundleMediaType)
	if err != nil {
		v.fail(fmt.Errorf("signature: list referrers: %w", err))
		return "", false
	}
	for _, d := range descs {
		if d.ArtifactType != "" && d.ArtifactType != BundleMediaType {
			continue
		}
		want, err := sha256Hex(d.Digest)
		if err != nil {
			continue
		}
		raw, err := v.src.Manifest(ctx, v.repo, d.Digest)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			v.fail(fmt.Errorf("signature: read referrer manifest %s: %w", d.Digest, err))
			continue
		}
		if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != want {
			v.found = true // a bundle was listed but its manifest is tampered
			continue
		}
		var m manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			v.found = true
			continue
		}
		if m.ArtifactType != BundleMediaType {
			continue // not a signature (e.g. an SBOM)
		}
		v.found = true
		if m.Subject == nil || m.Subject.Digest != v.digest {
			continue
		}
		for _, l := range m.Layers {
			if l.MediaType != BundleMediaType {
				continue
			}
			b, ok := v.blob(ctx, l)
			if !ok {
				continue
			}
			if id, ok := v.bundle(b); ok {
				return id, true
			}
		}
	}
	return "", false
}

// bundle verifies one sigstore bundle's DSSE envelope.
func (v *verifier) bundle(raw []byte) (string, bool) {
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil || b.MediaType != BundleMediaType || b.DSSEEnvelope == nil {
		return "", false
	}
	env := b.DSSEEnvelope
	if env.PayloadType != InTotoPayloadType {
		return "", false
	}
	payload, ok := decodeBase64(env.Payload)
	if !ok || !v.statementClaims(payload) {
		return "", false
	}
	h := sha256.Sum256(PAE(env.PayloadType, payload))
	for _, s := range env.Signatures {
		sig, ok := decodeBase64(s.Sig)
		if !ok || len(sig) == 0 {
			continue
		}
		if id, ok := v.match(h[:], sig); ok {
			return id, true
		}
	}
	return "", false
}

func (v *verifier) statementClaims(payload []byte) bool {
	var s statement
	if err := json.Unmarshal(payload, &s); err != nil {
		return false
	}
	if s.Type != InTotoStatementType || s.PredicateType != CosignSignPredicateType {
		return false
	}
	for _, sub := range s.Subject {
		if sub.Digest["sha256"] == v.hex {
			return true
		}
	}
	return false
}

// blob fetches the blob of d and checks it against d's digest and size. A
// missing or mismatching blob makes the signature unverifiable (false); a
// transport error is recorded as transient.
func (v *verifier) blob(ctx context.Context, d descriptor) ([]byte, bool) {
	want, err := sha256Hex(d.Digest)
	if err != nil || d.Size < 0 || d.Size > maxSignatureBlob {
		return nil, false
	}
	b, err := v.src.Blob(ctx, v.repo, d.Digest)
	if errors.Is(err, ErrNotFound) {
		return nil, false
	}
	if err != nil {
		v.fail(fmt.Errorf("signature: read blob %s: %w", d.Digest, err))
		return nil, false
	}
	if sum := sha256.Sum256(b); int64(len(b)) != d.Size || hex.EncodeToString(sum[:]) != want {
		return nil, false
	}
	return b, true
}

// match returns the id of the first trusted key under which sig (ASN.1 DER
// ECDSA) verifies hash.
func (v *verifier) match(hash, sig []byte) (string, bool) {
	for _, k := range v.keys {
		if ecdsa.VerifyASN1(k.Public, hash, sig) {
			return k.KeyID, true
		}
	}
	return "", false
}
