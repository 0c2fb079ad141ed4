// Package sigtest creates real cosign-format signatures (legacy .sig tags and
// OCI 1.1 sigstore-bundle referrers) for tests, optionally tampered, and
// pushes them to a registry with go-containerregistry.
package sigtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/shared/signature"
)

// Tamper describes how a signature should be made not to verify.
type Tamper struct {
	// OtherDigest, if set, is the digest the signed payload names instead
	// of the artifact's (a genuine signature of another artifact, stored
	// where the artifact's signatures are looked for).
	OtherDigest string
	// CorruptPayload alters the payload after it was signed.
	CorruptPayload bool
}

// GenerateKey returns a new ECDSA P-256 key. It panics if the system random
// source fails.
func GenerateKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// KeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block, like cosign.pub.
func KeyPEM(pub *ecdsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// LegacyPayload returns cosign's simple-signing payload naming digest.
func LegacyPayload(digest string) []byte {
	p := map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": ""},
			"image":    map[string]string{"docker-manifest-digest": digest},
			"type":     signature.SimpleSigningType,
		},
		"optional": nil,
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

// LegacySignature returns the payload and base64 signature of a legacy
// signature layer for digest, tampered as t says.
func LegacySignature(key *ecdsa.PrivateKey, digest string, t Tamper) (payload []byte, sigB64 string, err error) {
	named := digest
	if t.OtherDigest != "" {
		named = t.OtherDigest
	}
	payload = LegacyPayload(named)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, "", err
	}
	if t.CorruptPayload {
		payload = corrupt(payload)
	}
	return payload, base64.StdEncoding.EncodeToString(sig), nil
}

// Statement returns the in-toto statement v1 cosign signs for digest.
func Statement(digest string) []byte {
	hexDigest := strings.TrimPrefix(digest, "sha256:")
	s := map[string]any{
		"_type": signature.InTotoStatementType,
		"subject": []map[string]any{{
			"name":   "",
			"digest": map[string]string{"sha256": hexDigest},
		}},
		"predicateType": signature.CosignSignPredicateType,
		"predicate":     map[string]any{},
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Bundle returns a sigstore bundle v0.3 (key-based, no transparency log
// entries) holding a DSSE envelope of the statement for digest, tampered as
// t says. The key hint is a SHA-256 of the public key, as cosign writes it.
func Bundle(key *ecdsa.PrivateKey, digest string, t Tamper) ([]byte, error) {
	named := digest
	if t.OtherDigest != "" {
		named = t.OtherDigest
	}
	payload := Statement(named)
	h := sha256.Sum256(signature.PAE(signature.InTotoPayloadType, payload))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	if t.CorruptPayload {
		payload = corrupt(payload)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	hint := sha256.Sum256(der)
	b := map[string]any{
		"mediaType": signature.BundleMediaType,
		"verificationMaterial": map[string]any{
			"publicKey":   map[string]string{"hint": base64.StdEncoding.EncodeToString(hint[:])},
			"tlogEntries": []any{},
		},
		"dsseEnvelope": map[string]any{
			"payload":     base64.StdEncoding.EncodeToString(payload),
			"payloadType": signature.InTotoPayloadType,
			"signatures": []map[string]string{{
				"sig":   base64.StdEncoding.EncodeToString(sig),
				"keyid": "",
			}},
		},
	}
	return json.Marshal(b)
}

// corrupt changes the payload's bytes while keeping it valid JSON with the
// same claims, so only the signature check can catch it.
func corrupt(payload []byte) []byte {
	return append(append([]byte(nil), payload...), ' ')
}

// PushLegacy signs digest with key and appends the signature layer to the
// manifest at tag sha256-<hex>.sig in repo, creating it if absent, as cosign
// sign does in its legacy format.
func PushLegacy(ctx context.Context, repo name.Repository, digest string, key *ecdsa.PrivateKey, opts ...remote.Option) error {
	return PushLegacyTampered(ctx, repo, digest, key, Tamper{}, opts...)
}

// PushLegacyTampered is PushLegacy with a signature tampered as t says.
func PushLegacyTampered(ctx context.Context, repo name.Repository, digest string, key *ecdsa.PrivateKey, t Tamper, opts ...remote.Option) error {
	tag, err := signature.LegacyTag(digest)
	if err != nil {
		return err
	}
	payload, sig, err := LegacySignature(key, digest, t)
	if err != nil {
		return err
	}
	opts = append(opts, remote.WithContext(ctx))
	ref := repo.Tag(tag)

	base, err := remote.Image(ref, opts...)
	var terr *transport.Error
	switch {
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	case err != nil:
		return fmt.Errorf("sigtest: read %s: %w", ref, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, types.MediaType(signature.SimpleSigningMediaType)),
		Annotations: map[string]string{signature.SignatureAnnotation: sig},
	})
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return fmt.Errorf("sigtest: push %s: %w", ref, err)
	}
	return nil
}

// PushBundle signs subject with key and pushes the sigstore bundle as an OCI
// 1.1 referrer of subject in repo, laid out as cosign v3 does: an image
// manifest with artifactType application/vnd.dev.sigstore.bundle.v0.3+json,
// the empty config, one bundle layer, and subject. It returns after the
// manifest is pushed (by digest, untagged); go-containerregistry maintains
// the referrers tag-schema index itself if the registry lacks the referrers
// API.
func PushBundle(ctx context.Context, repo name.Repository, subject v1.Descriptor, key *ecdsa.PrivateKey, opts ...remote.Option) error {
	return PushBundleTampered(ctx, repo, subject, key, Tamper{}, opts...)
}

// PushBundleTampered is PushBundle with a signature tampered as t says.
func PushBundleTampered(ctx context.Context, repo name.Repository, subject v1.Descriptor, key *ecdsa.PrivateKey, t Tamper, opts ...remote.Option) error {
	b, err := Bundle(key, subject.Digest.String(), t)
	if err != nil {
		return err
	}
	_, err = PushReferrer(ctx, repo, subject, b, opts...)
	return err
}

// emptyJSON is the OCI empty descriptor's content.
var emptyJSON = []byte("{}")

// PushReferrer pushes bundleJSON as a cosign-style sigstore bundle referrer
// of subject and returns the referrer manifest's digest. Use it to push a
// hand-made bundle.
func PushReferrer(ctx context.Context, repo name.Repository, subject v1.Descriptor, bundleJSON []byte, opts ...remote.Option) (v1.Hash, error) {
	opts = append(opts, remote.WithContext(ctx))
	cfg := static.NewLayer(emptyJSON, types.OCIEmptyJSON)
	layer := static.NewLayer(bundleJSON, types.MediaType(signature.BundleMediaType))
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("sigtest: push blob: %w", err)
		}
	}
	layerDigest, _ := layer.Digest()
	cfgDigest, _ := cfg.Digest()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  signature.BundleMediaType,
		Config: v1.Descriptor{
			MediaType: types.OCIEmptyJSON,
			Digest:    cfgDigest,
			Size:      int64(len(emptyJSON)),
		},
		Layers: []v1.Descriptor{{
			MediaType: types.MediaType(signature.BundleMediaType),
			Digest:    layerDigest,
			Size:      int64(len(bundleJSON)),
			Annotations: map[string]string{
				"org.opencontainers.image.title": "sha256-" + layerDigest.Hex + ".sigstore.json",
			},
		}},
		Subject: &v1.Descriptor{
			MediaType: subject.MediaType,
			Digest:    subject.Digest,
			Size:      subject.Size,
		},
		Annotations: map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": signature.CosignSignPredicateType,
			"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	sum := sha256.Sum256(raw)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	ref := repo.Digest(h.String())
	if err := remote.Put(ref, rawManifest{raw: raw, mediaType: types.OCIManifestSchema1}, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("sigtest: push %s: %w", ref, err)
	}
	return h, nil
}

type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mediaType, nil }
