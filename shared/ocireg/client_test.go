package ocireg_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/shared/ocireg"
	"github.com/gpuaas/app-artifacts/shared/signature"
	"github.com/gpuaas/app-artifacts/shared/signature/sigtest"
)

// fastRetry keeps go-containerregistry's retries of 5xx answers short.
var fastRetry = remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2})

// testRegistry is go-containerregistry's in-process registry served on
// 127.0.0.1, with switches to make it fail.
type testRegistry struct {
	host      string
	srv       *httptest.Server
	failBlobs atomic.Bool // GET .../blobs/... answers 503
	failAll   atomic.Bool // every request answers 503
}

func startRegistry(t *testing.T, referrersAPI bool) *testRegistry {
	t.Helper()
	opts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	if referrersAPI {
		opts = append(opts, registry.WithReferrersSupport(true))
	}
	reg := registry.New(opts...)
	tr := &testRegistry{}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr.failAll.Load() || (tr.failBlobs.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")) {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

// pushImage pushes a random image to host/repoPath:v1.
func pushImage(t *testing.T, host, repoPath string) (name.Repository, v1.Descriptor) {
	t.Helper()
	repo, err := name.NewRepository(host+"/"+repoPath, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("v1"), img); err != nil {
		t.Fatal(err)
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	return repo, *d
}

func trustedKey(t *testing.T, id string, k *ecdsa.PrivateKey) signature.Key {
	t.Helper()
	pub, err := signature.ParsePublicKeyPEM(sigtest.KeyPEM(&k.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return signature.Key{KeyID: id, Public: pub}
}

func newClient(t *testing.T, host string) *ocireg.Client {
	t.Helper()
	c, err := ocireg.New(host, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	return c
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
			t.Fatalf("Verify() = %q, %v; want %v", got, err, wantErr)
		}
	default:
		if err != nil || got != want {
			t.Fatalf("Verify() = %q, %v; want %q", got, err, want)
		}
	}
}

// signer pushes one signature of the subject in the format under test.
type signer func(t *testing.T, repo name.Repository, subject v1.Descriptor, key *ecdsa.PrivateKey, tamper sigtest.Tamper)

func legacySigner(t *testing.T, repo name.Repository, subject v1.Descriptor, key *ecdsa.PrivateKey, tamper sigtest.Tamper) {
	t.Helper()
	if err := sigtest.PushLegacyTampered(context.Background(), repo, subject.Digest.String(), key, tamper); err != nil {
		t.Fatal(err)
	}
}

func bundleSigner(t *testing.T, repo name.Repository, subject v1.Descriptor, key *ecdsa.PrivateKey, tamper sigtest.Tamper) {
	t.Helper()
	if err := sigtest.PushBundleTampered(context.Background(), repo, subject, key, tamper); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyAgainstRegistry(t *testing.T) {
	k1, k2, k3, untrusted := sigtest.GenerateKey(), sigtest.GenerateKey(), sigtest.GenerateKey(), sigtest.GenerateKey()
	one := []signature.Key{trustedKey(t, "k1", k1)}
	several := []signature.Key{trustedKey(t, "k1", k1), trustedKey(t, "k2", k2), trustedKey(t, "k3", k3)}
	otherDigest := "sha256:" + strings.Repeat("ab", 32)

	type sig struct {
		key    *ecdsa.PrivateKey
		tamper sigtest.Tamper
	}
	type fault int
	const (
		none     fault = iota
		down           // the registry is not listening any more
		fail503        // every request answers 503
		blobs503       // blob reads answer 503
	)
	cases := []struct {
		name      string
		sigs      []sig
		keys      []signature.Key
		fault     fault
		want      string
		wantErr   error
		transient bool
	}{
		{name: "valid", sigs: []sig{{key: k1}}, keys: one, want: "k1"},
		{name: "unsigned", keys: one, wantErr: signature.ErrMissing},
		{name: "wrong key", sigs: []sig{{key: untrusted}}, keys: one, wantErr: signature.ErrInvalid},
		{name: "signature over another digest", sigs: []sig{{key: k1, tamper: sigtest.Tamper{OtherDigest: otherDigest}}}, keys: one, wantErr: signature.ErrInvalid},
		{name: "tampered payload", sigs: []sig{{key: k1, tamper: sigtest.Tamper{CorruptPayload: true}}}, keys: one, wantErr: signature.ErrInvalid},
		{name: "one valid among several keys", sigs: []sig{{key: k2}}, keys: several, want: "k2"},
		{name: "one valid among several signatures", sigs: []sig{{key: untrusted}, {key: k1, tamper: sigtest.Tamper{CorruptPayload: true}}, {key: k3}}, keys: several, want: "k3"},
		{name: "registry down", sigs: []sig{{key: k1}}, keys: one, fault: down, transient: true},
		{name: "registry down, unsigned", keys: one, fault: down, transient: true},
		{name: "registry answers 503", sigs: []sig{{key: k1}}, keys: one, fault: fail503, transient: true},
		{name: "blob reads answer 503", sigs: []sig{{key: k1}}, keys: one, fault: blobs503, transient: true},
	}
	formats := []struct {
		name string
		sign signer
	}{
		{"legacy", legacySigner},
		{"referrers", bundleSigner},
	}
	for _, format := range formats {
		for _, tc := range cases {
			t.Run(format.name+"/"+tc.name, func(t *testing.T) {
				reg := startRegistry(t, true)
				repo, subject := pushImage(t, reg.host, "apps/demo")
				for _, s := range tc.sigs {
					format.sign(t, repo, subject, s.key, s.tamper)
				}
				switch tc.fault {
				case down:
					reg.srv.Close()
				case fail503:
					reg.failAll.Store(true)
				case blobs503:
					reg.failBlobs.Store(true)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				got, err := signature.Verify(ctx, newClient(t, reg.host), "apps/demo", subject.Digest.String(), tc.keys)
				checkVerdict(t, got, err, tc.want, tc.wantErr, tc.transient)
			})
		}
	}
}

// TestVerifyMixedAndFallback covers both formats together, unrelated
// referrers, and a registry without the referrers API.
func TestVerifyMixedAndFallback(t *testing.T) {
	k1, untrusted := sigtest.GenerateKey(), sigtest.GenerateKey()
	keys := []signature.Key{trustedKey(t, "k1", k1)}
	ctx := context.Background()

	tests := []struct {
		name         string
		referrersAPI bool
		push         func(t *testing.T, repo name.Repository, subject v1.Descriptor)
		want         string
		wantErr      error
	}{
		{name: "invalid legacy, valid bundle", referrersAPI: true, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			legacySigner(t, repo, subject, untrusted, sigtest.Tamper{})
			bundleSigner(t, repo, subject, k1, sigtest.Tamper{})
		}, want: "k1"},
		{name: "valid legacy, invalid bundle", referrersAPI: true, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			legacySigner(t, repo, subject, k1, sigtest.Tamper{})
			bundleSigner(t, repo, subject, untrusted, sigtest.Tamper{})
		}, want: "k1"},
		{name: "both invalid", referrersAPI: true, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			legacySigner(t, repo, subject, k1, sigtest.Tamper{CorruptPayload: true})
			bundleSigner(t, repo, subject, untrusted, sigtest.Tamper{})
		}, wantErr: signature.ErrInvalid},
		{name: "only an unrelated referrer (SBOM)", referrersAPI: true, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			pushSBOMReferrer(t, repo, subject)
		}, wantErr: signature.ErrMissing},
		{name: "SBOM referrer and a valid bundle", referrersAPI: true, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			pushSBOMReferrer(t, repo, subject)
			bundleSigner(t, repo, subject, k1, sigtest.Tamper{})
		}, want: "k1"},
		{name: "signature of another image in the same repository", referrersAPI: true, push: func(t *testing.T, repo name.Repository, _ v1.Descriptor) {
			_, other := pushImage(t, repo.RegistryStr(), repo.RepositoryStr())
			legacySigner(t, repo, other, k1, sigtest.Tamper{})
			bundleSigner(t, repo, other, k1, sigtest.Tamper{})
		}, wantErr: signature.ErrMissing},
		{name: "tag-schema fallback: valid bundle", referrersAPI: false, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			bundleSigner(t, repo, subject, k1, sigtest.Tamper{})
		}, want: "k1"},
		{name: "tag-schema fallback: wrong key", referrersAPI: false, push: func(t *testing.T, repo name.Repository, subject v1.Descriptor) {
			bundleSigner(t, repo, subject, untrusted, sigtest.Tamper{})
		}, wantErr: signature.ErrInvalid},
		{name: "tag-schema fallback: unsigned", referrersAPI: false, push: func(*testing.T, name.Repository, v1.Descriptor) {}, wantErr: signature.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := startRegistry(t, tt.referrersAPI)
			repo, subject := pushImage(t, reg.host, "apps/demo")
			tt.push(t, repo, subject)
			got, err := signature.Verify(ctx, newClient(t, reg.host), "apps/demo", subject.Digest.String(), keys)
			checkVerdict(t, got, err, tt.want, tt.wantErr, false)
		})
	}
}

// pushSBOMReferrer pushes a non-signature OCI 1.1 referrer of subject.
func pushSBOMReferrer(t *testing.T, repo name.Repository, subject v1.Descriptor) {
	t.Helper()
	cfg := static.NewLayer([]byte("{}"), types.OCIEmptyJSON)
	layer := static.NewLayer([]byte(`{"spdxVersion":"SPDX-2.3"}`), "application/spdx+json")
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
	}
	cd, _ := cfg.Digest()
	ld, _ := layer.Digest()
	ls, _ := layer.Size()
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  "application/spdx+json",
		Config:        v1.Descriptor{MediaType: types.OCIEmptyJSON, Digest: cd, Size: 2},
		Layers:        []v1.Descriptor{{MediaType: "application/spdx+json", Digest: ld, Size: ls}},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func TestClient(t *testing.T) {
	reg := startRegistry(t, true)
	repo, subject := pushImage(t, reg.host, "apps/demo")
	k := sigtest.GenerateKey()
	legacySigner(t, repo, subject, k, sigtest.Tamper{})
	bundleSigner(t, repo, subject, k, sigtest.Tamper{})
	pushSBOMReferrer(t, repo, subject)
	c := newClient(t, reg.host)
	ctx := context.Background()
	d := subject.Digest.String()
	absent := "sha256:" + strings.Repeat("0", 64)
	tag, _ := signature.LegacyTag(d)

	t.Run("ManifestByTag", func(t *testing.T) {
		b, err := c.ManifestByTag(ctx, "apps/demo", tag)
		if err != nil || !json.Valid(b) {
			t.Fatalf("ManifestByTag() = %d bytes, %v", len(b), err)
		}
	})
	t.Run("Manifest is the exact bytes", func(t *testing.T) {
		b, err := c.Manifest(ctx, "apps/demo", d)
		if err != nil {
			t.Fatal(err)
		}
		if h, _, _ := v1.SHA256(strings.NewReader(string(b))); h != subject.Digest {
			t.Errorf("Manifest() digest = %s, want %s", h, subject.Digest)
		}
	})
	t.Run("Referrers filters by artifactType", func(t *testing.T) {
		all, err := c.Referrers(ctx, "apps/demo", d, "")
		if err != nil || len(all) != 2 {
			t.Fatalf("Referrers(all) = %+v, %v; want 2", all, err)
		}
		bundles, err := c.Referrers(ctx, "apps/demo", d, signature.BundleMediaType)
		if err != nil || len(bundles) != 1 || bundles[0].ArtifactType != signature.BundleMediaType {
			t.Fatalf("Referrers(bundle) = %+v, %v; want the one bundle", bundles, err)
		}
		b, err := c.Manifest(ctx, "apps/demo", bundles[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(b, &m); err != nil || len(m.Layers) != 1 {
			t.Fatalf("bundle manifest = %s, %v", b, err)
		}
		blob, err := c.Blob(ctx, "apps/demo", m.Layers[0].Digest.String())
		if err != nil || int64(len(blob)) != m.Layers[0].Size {
			t.Fatalf("Blob() = %d bytes, %v; want %d", len(blob), err, m.Layers[0].Size)
		}
	})
	notFound := []struct {
		name string
		call func() error
	}{
		{"tag absent", func() error { _, err := c.ManifestByTag(ctx, "apps/demo", "nope"); return err }},
		{"tag in absent repository", func() error { _, err := c.ManifestByTag(ctx, "apps/none", tag); return err }},
		{"manifest absent", func() error { _, err := c.Manifest(ctx, "apps/demo", absent); return err }},
		{"blob absent", func() error { _, err := c.Blob(ctx, "apps/demo", absent); return err }},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, signature.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
	t.Run("no referrers is an empty list", func(t *testing.T) {
		for _, r := range []string{"apps/demo", "apps/none"} {
			got, err := c.Referrers(ctx, r, absent, signature.BundleMediaType)
			if err != nil || len(got) != 0 {
				t.Errorf("Referrers(%s) = %+v, %v; want empty", r, got, err)
			}
		}
	})
	t.Run("server errors are not ErrNotFound", func(t *testing.T) {
		reg.failAll.Store(true)
		defer reg.failAll.Store(false)
		c := newClient(t, reg.host) // fresh: no cached ping
		if _, err := c.Manifest(ctx, "apps/demo", d); err == nil || errors.Is(err, signature.ErrNotFound) {
			t.Errorf("Manifest() err = %v, want a non-ErrNotFound error", err)
		}
	})
	t.Run("bad repository name", func(t *testing.T) {
		if _, err := c.Manifest(ctx, "Apps/UPPER", d); err == nil || errors.Is(err, signature.ErrNotFound) {
			t.Errorf("err = %v, want a non-ErrNotFound error", err)
		}
	})
}

func TestNew(t *testing.T) {
	for _, h := range []string{"127.0.0.1:5000", "localhost:5000", "[::1]:5000", "123456789012.dkr.ecr.us-east-1.amazonaws.com"} {
		if _, err := ocireg.New(h); err != nil {
			t.Errorf("New(%q) error = %v", h, err)
		}
	}
	if _, err := ocireg.New("bad host/with/path"); err == nil {
		t.Error("New(bad host) succeeded")
	}
}
