package signature_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/signature"
	"github.com/gpuaas/app-artifacts/shared/signature/sigtest"
)

// fakeSource is an in-memory signature.Source with error injection, for the
// cases a real registry cannot produce (tampered blobs, lying listings).
type fakeSource struct {
	tags      map[string][]byte
	manifests map[string][]byte
	referrers []signature.Descriptor
	blobs     map[string][]byte

	errTag, errManifest, errReferrers, errBlob error
}

func newFake() *fakeSource {
	return &fakeSource{tags: map[string][]byte{}, manifests: map[string][]byte{}, blobs: map[string][]byte{}}
}

func (f *fakeSource) ManifestByTag(_ context.Context, _, tag string) ([]byte, error) {
	if f.errTag != nil {
		return nil, f.errTag
	}
	if b, ok := f.tags[tag]; ok {
		return b, nil
	}
	return nil, signature.ErrNotFound
}

func (f *fakeSource) Manifest(_ context.Context, _, digest string) ([]byte, error) {
	if f.errManifest != nil {
		return nil, f.errManifest
	}
	if b, ok := f.manifests[digest]; ok {
		return b, nil
	}
	return nil, signature.ErrNotFound
}

func (f *fakeSource) Referrers(_ context.Context, _, _, artifactType string) ([]signature.Descriptor, error) {
	if f.errReferrers != nil {
		return nil, f.errReferrers
	}
	var out []signature.Descriptor
	for _, d := range f.referrers {
		if d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeSource) Blob(_ context.Context, _, digest string) ([]byte, error) {
	if f.errBlob != nil {
		return nil, f.errBlob
	}
	if b, ok := f.blobs[digest]; ok {
		return b, nil
	}
	return nil, signature.ErrNotFound
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

type desc = map[string]any

func (f *fakeSource) blob(mediaType string, b []byte, ann map[string]string) desc {
	d := digestOf(b)
	f.blobs[d] = b
	out := desc{"mediaType": mediaType, "digest": d, "size": len(b)}
	if ann != nil {
		out["annotations"] = ann
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// legacy stores a .sig manifest for digest with the given layers.
func (f *fakeSource) legacy(digest string, layers ...desc) {
	tag, err := signature.LegacyTag(digest)
	if err != nil {
		panic(err)
	}
	f.tags[tag] = mustJSON(desc{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        f.blob("application/vnd.oci.image.config.v1+json", []byte(`{}`), nil),
		"layers":        layers,
	})
}

func (f *fakeSource) legacyLayer(key *ecdsa.PrivateKey, digest string, t sigtest.Tamper) desc {
	payload, sig, err := sigtest.LegacySignature(key, digest, t)
	if err != nil {
		panic(err)
	}
	return f.blob(signature.SimpleSigningMediaType, payload, map[string]string{signature.SignatureAnnotation: sig})
}

// referrer stores a cosign-style bundle referrer manifest of subject holding
// bundleJSON; edit may change the manifest before it is stored. It returns
// the listed descriptor.
func (f *fakeSource) referrer(subject string, bundleJSON []byte, edit func(m desc)) *signature.Descriptor {
	m := desc{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  signature.BundleMediaType,
		"config":        f.blob("application/vnd.oci.empty.v1+json", []byte(`{}`), nil),
		"layers":        []desc{f.blob(signature.BundleMediaType, bundleJSON, nil)},
		"subject":       desc{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1234},
	}
	if edit != nil {
		edit(m)
	}
	raw := mustJSON(m)
	d := digestOf(raw)
	f.manifests[d] = raw
	f.referrers = append(f.referrers, signature.Descriptor{
		MediaType: "application/vnd.oci.image.manifest.v1+json", ArtifactType: signature.BundleMediaType,
		Digest: d, Size: int64(len(raw)),
	})
	return &f.referrers[len(f.referrers)-1]
}

func bundleOf(key *ecdsa.PrivateKey, digest string, t sigtest.Tamper) []byte {
	b, err := sigtest.Bundle(key, digest, t)
	if err != nil {
		panic(err)
	}
	return b
}

// dsseBundle builds a bundle around an arbitrary statement, signed over
// what sign returns for (payloadType, payload).
func dsseBundle(key *ecdsa.PrivateKey, payloadType string, payload []byte, signed func(string, []byte) []byte, keyid string) []byte {
	h := sha256.Sum256(signed(payloadType, payload))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		panic(err)
	}
	return mustJSON(desc{
		"mediaType":            signature.BundleMediaType,
		"verificationMaterial": desc{"publicKey": desc{"hint": keyid}},
		"dsseEnvelope": desc{
			"payload":     base64.StdEncoding.EncodeToString(payload),
			"payloadType": payloadType,
			"signatures":  []desc{{"sig": base64.StdEncoding.EncodeToString(sig), "keyid": keyid}},
		},
	})
}

func statement(typ, predicateType, hexDigest string) []byte {
	return mustJSON(desc{
		"_type":         typ,
		"subject":       []desc{{"name": "x", "digest": desc{"sha256": hexDigest}}},
		"predicateType": predicateType,
		"predicate":     desc{},
	})
}

func TestVerifyWithFakeSource(t *testing.T) {
	const artifact = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	const other = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	artifactHex := artifact[len("sha256:"):]
	trusted1, trusted2, untrusted := sigtest.GenerateKey(), sigtest.GenerateKey(), sigtest.GenerateKey()
	keys := []signature.Key{{KeyID: "k1", Public: &trusted1.PublicKey}, {KeyID: "k2", Public: &trusted2.PublicKey}}
	errDown := errors.New("connection refused")
	pae := signature.PAE
	raw := func(_ string, p []byte) []byte { return p }

	tests := []struct {
		name    string
		setup   func(f *fakeSource)
		keys    []signature.Key
		digest  string
		want    string
		wantErr error // ErrMissing/ErrInvalid, or nil with transient=true
		// transient: an error that is neither ErrMissing nor ErrInvalid.
		transient bool
	}{
		{name: "nothing", setup: func(*fakeSource) {}, wantErr: signature.ErrMissing},
		{name: "legacy valid", setup: func(f *fakeSource) {
			f.legacy(artifact, f.legacyLayer(trusted2, artifact, sigtest.Tamper{}))
		}, want: "k2"},
		{name: "legacy valid after invalid layers", setup: func(f *fakeSource) {
			f.legacy(artifact,
				f.legacyLayer(untrusted, artifact, sigtest.Tamper{}),
				f.legacyLayer(trusted1, artifact, sigtest.Tamper{OtherDigest: other}),
				desc{"mediaType": "application/octet-stream", "digest": other, "size": 1},
				f.legacyLayer(trusted1, artifact, sigtest.Tamper{}))
		}, want: "k1"},
		{name: "legacy manifest without signature layers", setup: func(f *fakeSource) { f.legacy(artifact) }, wantErr: signature.ErrInvalid},
		{name: "legacy manifest not JSON", setup: func(f *fakeSource) {
			tag, _ := signature.LegacyTag(artifact)
			f.tags[tag] = []byte("nope")
		}, wantErr: signature.ErrInvalid},
		{name: "legacy tampered blob (content does not match descriptor)", setup: func(f *fakeSource) {
			l := f.legacyLayer(trusted1, artifact, sigtest.Tamper{})
			f.blobs[l["digest"].(string)] = sigtest.LegacyPayload(other)
			f.legacy(artifact, l)
		}, wantErr: signature.ErrInvalid},
		{name: "legacy blob size differs from descriptor", setup: func(f *fakeSource) {
			l := f.legacyLayer(trusted1, artifact, sigtest.Tamper{})
			l["size"] = l["size"].(int) + 1
			f.legacy(artifact, l)
		}, wantErr: signature.ErrInvalid},
		{name: "legacy blob missing", setup: func(f *fakeSource) {
			l := f.legacyLayer(trusted1, artifact, sigtest.Tamper{})
			delete(f.blobs, l["digest"].(string))
			f.legacy(artifact, l)
		}, wantErr: signature.ErrInvalid},
		{name: "legacy wrong critical.type", setup: func(f *fakeSource) {
			payload := []byte(`{"critical":{"image":{"docker-manifest-digest":"` + artifact + `"},"type":"something else"}}`)
			h := sha256.Sum256(payload)
			sig, _ := ecdsa.SignASN1(rand.Reader, trusted1, h[:])
			f.legacy(artifact, f.blob(signature.SimpleSigningMediaType, payload, map[string]string{signature.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}))
		}, wantErr: signature.ErrInvalid},
		{name: "legacy containers/image key spelling accepted", setup: func(f *fakeSource) {
			payload := []byte(`{"critical":{"identity":{"docker-reference":"r"},"image":{"Docker-manifest-digest":"` + artifact + `"},"type":"cosign container image signature"},"optional":null}`)
			h := sha256.Sum256(payload)
			sig, _ := ecdsa.SignASN1(rand.Reader, trusted1, h[:])
			f.legacy(artifact, f.blob(signature.SimpleSigningMediaType, payload, map[string]string{signature.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}))
		}, want: "k1"},
		{name: "bundle valid", setup: func(f *fakeSource) {
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
		}, want: "k1"},
		{name: "bundle key hint naming a trusted key is not trusted", setup: func(f *fakeSource) {
			f.referrer(artifact, dsseBundle(untrusted, signature.InTotoPayloadType, statement(signature.InTotoStatementType, signature.CosignSignPredicateType, artifactHex), pae, "k1"), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle signed over the raw payload instead of the PAE", setup: func(f *fakeSource) {
			f.referrer(artifact, dsseBundle(trusted1, signature.InTotoPayloadType, statement(signature.InTotoStatementType, signature.CosignSignPredicateType, artifactHex), raw, ""), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle attestation predicate is not a signature", setup: func(f *fakeSource) {
			f.referrer(artifact, dsseBundle(trusted1, signature.InTotoPayloadType, statement(signature.InTotoStatementType, "https://slsa.dev/provenance/v1", artifactHex), pae, ""), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle statement v0.1 rejected", setup: func(f *fakeSource) {
			f.referrer(artifact, dsseBundle(trusted1, signature.InTotoPayloadType, statement("https://in-toto.io/Statement/v0.1", signature.CosignSignPredicateType, artifactHex), pae, ""), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle other payloadType rejected", setup: func(f *fakeSource) {
			f.referrer(artifact, dsseBundle(trusted1, "application/json", statement(signature.InTotoStatementType, signature.CosignSignPredicateType, artifactHex), pae, ""), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle over another digest", setup: func(f *fakeSource) {
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{OtherDigest: other}), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle corrupt payload", setup: func(f *fakeSource) {
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{CorruptPayload: true}), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle manifest subject is another artifact", setup: func(f *fakeSource) {
			f.referrer(other, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
		}, wantErr: signature.ErrInvalid},
		{name: "bundle manifest bytes do not match listed digest", setup: func(f *fakeSource) {
			d := f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
			f.manifests[d.Digest] = append(f.manifests[d.Digest], ' ')
		}, wantErr: signature.ErrInvalid},
		{name: "bundle blob does not match its descriptor", setup: func(f *fakeSource) {
			good := bundleOf(trusted1, artifact, sigtest.Tamper{})
			f.referrer(artifact, good, nil)
			// Another genuine, valid bundle: only the digest check can reject it.
			f.blobs[digestOf(good)] = bundleOf(trusted1, artifact, sigtest.Tamper{})
		}, wantErr: signature.ErrInvalid},
		{name: "listed referrer with another artifactType in its manifest is not a signature", setup: func(f *fakeSource) {
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), func(m desc) { m["artifactType"] = "application/spdx+json" })
		}, wantErr: signature.ErrMissing},
		{name: "listed referrer deleted before it is read", setup: func(f *fakeSource) {
			d := f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
			delete(f.manifests, d.Digest)
		}, wantErr: signature.ErrMissing},
		{name: "bundle valid after an invalid one, legacy invalid", setup: func(f *fakeSource) {
			f.legacy(artifact, f.legacyLayer(untrusted, artifact, sigtest.Tamper{}))
			f.referrer(artifact, bundleOf(untrusted, artifact, sigtest.Tamper{}), nil)
			f.referrer(artifact, bundleOf(trusted2, artifact, sigtest.Tamper{}), nil)
		}, want: "k2"},

		{name: "legacy read fails, no referrers: transient", setup: func(f *fakeSource) { f.errTag = errDown }, transient: true},
		{name: "referrers listing fails, legacy invalid: transient, not invalid", setup: func(f *fakeSource) {
			f.legacy(artifact, f.legacyLayer(untrusted, artifact, sigtest.Tamper{}))
			f.errReferrers = errDown
		}, transient: true},
		{name: "blob read fails: transient, not invalid", setup: func(f *fakeSource) {
			f.legacy(artifact, f.legacyLayer(trusted1, artifact, sigtest.Tamper{}))
			f.errBlob = errDown
		}, transient: true},
		{name: "manifest read fails: transient, not missing", setup: func(f *fakeSource) {
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
			f.errManifest = errDown
		}, transient: true},
		{name: "legacy read fails but a bundle verifies", setup: func(f *fakeSource) {
			f.errTag = errDown
			f.referrer(artifact, bundleOf(trusted1, artifact, sigtest.Tamper{}), nil)
		}, want: "k1"},
		{name: "malformed digest is an error, not a verdict", setup: func(*fakeSource) {}, digest: "sha256:xyz", transient: true},
		{name: "no trusted keys is an error, not a verdict", setup: func(f *fakeSource) {
			f.legacy(artifact, f.legacyLayer(trusted1, artifact, sigtest.Tamper{}))
		}, keys: []signature.Key{}, transient: true},
		{name: "nil trusted key is an error", setup: func(*fakeSource) {}, keys: []signature.Key{{KeyID: "nil"}}, transient: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			tt.setup(f)
			k := keys
			if tt.keys != nil {
				k = tt.keys
			}
			d := artifact
			if tt.digest != "" {
				d = tt.digest
			}
			got, err := signature.Verify(context.Background(), f, "apps/demo", d, k)
			checkVerdict(t, got, err, tt.want, tt.wantErr, tt.transient)
		})
	}
}

func checkVerdict(t *testing.T, got string, err error, want string, wantErr error, transient bool) {
	t.Helper()
	switch {
	case transient:
		if err == nil || errors.Is(err, signature.ErrMissing) || errors.Is(err, signature.ErrInvalid) {
			t.Fatalf("Verify() = %q, %v; want a transient error (neither ErrMissing nor ErrInvalid)", got, err)
		}
	case wantErr != nil:
		if err != wantErr {
			t.Fatalf("Verify() = %q, %v; want %v (unwrapped)", got, err, wantErr)
		}
	default:
		if err != nil || got != want {
			t.Fatalf("Verify() = %q, %v; want %q", got, err, want)
		}
	}
}
