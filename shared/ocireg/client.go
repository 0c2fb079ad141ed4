package ocireg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/shared/signature"
)

// maxBlob bounds the bytes Blob reads; signature blobs are a few KiB.
const maxBlob = 32 << 20

// Client reads one registry with go-containerregistry. It is safe for
// concurrent use; authentication and the registry ping are done once per
// repository and reused.
type Client struct {
	host     string
	nameOpts []name.Option
	puller   *remote.Puller
}

var _ signature.Source = (*Client)(nil)

// New returns a Client for registryHost ("host[:port]", e.g.
// "123456789012.dkr.ecr.us-east-1.amazonaws.com" or "127.0.0.1:5000").
// opts configure authentication, transport and retries (remote.WithAuth,
// remote.WithTransport, remote.WithRetryBackoff, ...). A loopback host
// (localhost, 127.0.0.0/8, ::1) is reached over plain HTTP.
func New(registryHost string, opts ...remote.Option) (*Client, error) {
	var nameOpts []name.Option
	if isLoopback(registryHost) {
		nameOpts = append(nameOpts, name.Insecure)
	}
	if _, err := name.NewRegistry(registryHost, nameOpts...); err != nil {
		return nil, fmt.Errorf("ocireg: registry host %q: %w", registryHost, err)
	}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("ocireg: %w", err)
	}
	return &Client{host: registryHost, nameOpts: nameOpts, puller: p}, nil
}

func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (c *Client) repository(repo string) (name.Repository, error) {
	r, err := name.NewRepository(c.host+"/"+repo, c.nameOpts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("ocireg: repository %q: %w", repo, err)
	}
	return r, nil
}

// ManifestByTag returns the manifest bytes at repo:tag, or
// signature.ErrNotFound.
func (c *Client) ManifestByTag(ctx context.Context, repo, tag string) ([]byte, error) {
	return c.manifest(ctx, repo, func(r name.Repository) (name.Reference, error) {
		return name.NewTag(r.String()+":"+tag, c.nameOpts...)
	})
}

// Manifest returns the manifest bytes of repo@digest, or
// signature.ErrNotFound. go-containerregistry checks the bytes against
// digest.
func (c *Client) Manifest(ctx context.Context, repo, digest string) ([]byte, error) {
	return c.manifest(ctx, repo, func(r name.Repository) (name.Reference, error) {
		return name.NewDigest(r.String()+"@"+digest, c.nameOpts...)
	})
}

func (c *Client) manifest(ctx context.Context, repo string, ref func(name.Repository) (name.Reference, error)) ([]byte, error) {
	r, err := c.repository(repo)
	if err != nil {
		return nil, err
	}
	rf, err := ref(r)
	if err != nil {
		return nil, fmt.Errorf("ocireg: reference in %q: %w", repo, err)
	}
	d, err := c.puller.Get(ctx, rf)
	if err != nil {
		return nil, mapErr(err)
	}
	return d.Manifest, nil
}

// Blob returns the blob repo@digest, or signature.ErrNotFound.
// go-containerregistry checks the bytes against digest while reading.
func (c *Client) Blob(ctx context.Context, repo, digest string) ([]byte, error) {
	r, err := c.repository(repo)
	if err != nil {
		return nil, err
	}
	ref, err := name.NewDigest(r.String()+"@"+digest, c.nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("ocireg: digest %q: %w", digest, err)
	}
	l, err := c.puller.Layer(ctx, ref)
	if err != nil {
		return nil, mapErr(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, mapErr(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxBlob+1))
	if err != nil {
		return nil, mapErr(err)
	}
	if len(b) > maxBlob {
		return nil, fmt.Errorf("ocireg: blob %s is larger than %d bytes", digest, maxBlob)
	}
	return b, nil
}

// Referrers lists the manifests referring to repo@digest with artifactType
// (all when artifactType is ""), through the OCI 1.1 referrers API, falling
// back to the referrers tag schema (tag sha256-<hex>) when the registry does
// not support the API, as go-containerregistry does. No referrers is an empty
// list.
//
// Some registries (go-containerregistry's own pkg/registry among them) report
// a referrer's artifactType as its config media type even when the manifest
// has an artifactType, so an image manifest listed with the empty config
// type or no artifactType is fetched to read its real artifactType.
func (c *Client) Referrers(ctx context.Context, repo, digest, artifactType string) ([]signature.Descriptor, error) {
	r, err := c.repository(repo)
	if err != nil {
		return nil, err
	}
	ref, err := name.NewDigest(r.String()+"@"+digest, c.nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("ocireg: digest %q: %w", digest, err)
	}
	idx, err := remote.Referrers(ref, remote.Reuse(c.puller), remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := make([]signature.Descriptor, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		at := d.ArtifactType
		if artifactType != "" && at != artifactType {
			if !ambiguous(d) {
				continue
			}
			at, err = c.artifactType(ctx, repo, d.Digest.String())
			if errors.Is(err, signature.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if at != artifactType {
				continue
			}
		}
		out = append(out, signature.Descriptor{
			MediaType:    string(d.MediaType),
			ArtifactType: at,
			Digest:       d.Digest.String(),
			Size:         d.Size,
			Annotations:  d.Annotations,
		})
	}
	return out, nil
}

// ambiguous reports whether a listed referrer's artifactType may be the
// registry's fallback to the config media type rather than the manifest's
// own artifactType.
func ambiguous(d v1.Descriptor) bool {
	if d.MediaType != types.OCIManifestSchema1 {
		return false
	}
	return d.ArtifactType == "" || d.ArtifactType == string(types.OCIEmptyJSON)
}

func (c *Client) artifactType(ctx context.Context, repo, digest string) (string, error) {
	raw, err := c.Manifest(ctx, repo, digest)
	if err != nil {
		return "", err
	}
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil // not a manifest we can classify; not a match
	}
	if m.ArtifactType != "" {
		return m.ArtifactType, nil
	}
	return m.Config.MediaType, nil
}

// mapErr turns a registry "not found" answer to a manifest or blob request
// into signature.ErrNotFound and keeps every other error (including a 404
// from the registry's /v2/ ping, which means a misconfigured host, not a
// missing object).
func mapErr(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	if terr.Request != nil {
		p := terr.Request.URL.Path
		if !strings.Contains(p, "/manifests/") && !strings.Contains(p, "/blobs/") {
			return err
		}
	}
	notFound := terr.StatusCode == http.StatusNotFound
	for _, d := range terr.Errors {
		switch d.Code {
		case transport.NameUnknownErrorCode, transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode:
			notFound = true
		}
	}
	if notFound {
		return fmt.Errorf("%w: %v", signature.ErrNotFound, err)
	}
	return err
}
