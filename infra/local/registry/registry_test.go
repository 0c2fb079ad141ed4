package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/infra/local/registry"
)

type env struct {
	reg  *registry.Registry
	url  string // http://127.0.0.1:port
	host string // 127.0.0.1:port
	ecr  *ecr.Client
}

func start(t *testing.T, opts registry.Options) *env {
	t.Helper()
	reg := registry.New(opts)
	srv := httptest.NewServer(reg) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:  awshttp.NewBuildableClient(), // honours AWS_CA_BUNDLE like production
	}
	client := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			so.RateLimiter = ratelimit.None
		})
	})
	return &env{reg: reg, url: srv.URL, host: strings.TrimPrefix(srv.URL, "http://"), ecr: client}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ociImage is a random OCI image (manifest and config media types OCI).
func ociImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, ggtypes.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, ggtypes.OCIConfigJSON)
}

func push(t *testing.T, e *env, ref string, img v1.Image) (digest string, raw []byte) {
	t.Helper()
	r, err := name.ParseReference(e.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctxT(t))); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err = img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), raw
}

func TestPushThenReadThroughECRAPI(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	img := ociImage(t)
	digest, raw := push(t, e, "gpuaas/p1/app:v1", img)

	for _, id := range []types.ImageIdentifier{{ImageDigest: aws.String(digest)}, {ImageTag: aws.String("v1")}} {
		out, err := e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
			RepositoryName:     aws.String("gpuaas/p1/app"),
			ImageIds:           []types.ImageIdentifier{id},
			AcceptedMediaTypes: []string{"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"},
		})
		if err != nil {
			t.Fatalf("BatchGetImage: %v", err)
		}
		if len(out.Images) != 1 || len(out.Failures) != 0 {
			t.Fatalf("images %d failures %+v", len(out.Images), out.Failures)
		}
		im := out.Images[0]
		if got := aws.ToString(im.ImageManifest); got != string(raw) {
			t.Errorf("manifest bytes differ:\n got %s\nwant %s", got, raw)
		}
		if got := aws.ToString(im.ImageManifestMediaType); got != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("media type %q", got)
		}
		if aws.ToString(im.ImageId.ImageDigest) != digest || aws.ToString(im.RegistryId) != "000000000000" || aws.ToString(im.RepositoryName) != "gpuaas/p1/app" {
			t.Errorf("image id %+v registry %v repo %v", im.ImageId, aws.ToString(im.RegistryId), aws.ToString(im.RepositoryName))
		}
	}

	di, err := e.ecr.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("gpuaas/p1/app")})
	if err != nil {
		t.Fatalf("DescribeImages: %v", err)
	}
	if len(di.ImageDetails) != 1 {
		t.Fatalf("image details %+v", di.ImageDetails)
	}
	d := di.ImageDetails[0]
	layers, _ := img.Layers()
	var size int64
	for _, l := range layers {
		s, _ := l.Size()
		size += s
	}
	if aws.ToString(d.ImageDigest) != digest || len(d.ImageTags) != 1 || d.ImageTags[0] != "v1" ||
		aws.ToString(d.ImageManifestMediaType) != "application/vnd.oci.image.manifest.v1+json" ||
		aws.ToString(d.ArtifactMediaType) != "application/vnd.oci.image.config.v1+json" ||
		aws.ToInt64(d.ImageSizeInBytes) != size || d.ImagePushedAt == nil || time.Since(*d.ImagePushedAt) > time.Minute {
		t.Errorf("detail %+v", d)
	}

	// The push created the repository with ECR's defaults.
	dr, err := e.ecr.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"gpuaas/p1/app"}})
	if err != nil {
		t.Fatalf("DescribeRepositories: %v", err)
	}
	r := dr.Repositories[0]
	if r.ImageTagMutability != types.ImageTagMutabilityMutable || aws.ToString(r.RepositoryUri) != e.host+"/gpuaas/p1/app" ||
		aws.ToString(r.RepositoryArn) != "arn:aws:ecr:us-east-1:000000000000:repository/gpuaas/p1/app" {
		t.Errorf("repository %+v", r)
	}
	if got := e.reg.Repositories(); len(got) != 1 || got[0] != "gpuaas/p1/app" {
		t.Errorf("Repositories() = %v", got)
	}
}

func TestBatchGetImageFailures(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	digest, _ := push(t, e, "team/app:v1", ociImage(t))
	other := "sha256:" + strings.Repeat("0", 64)

	out, err := e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String("team/app"),
		ImageIds: []types.ImageIdentifier{
			{ImageDigest: aws.String(other)},
			{ImageTag: aws.String("nope")},
			{ImageTag: aws.String("v1"), ImageDigest: aws.String(other)},
			{ImageDigest: aws.String("sha256:xyz")},
			{ImageDigest: aws.String(digest)},
		},
	})
	if err != nil {
		t.Fatalf("BatchGetImage: %v", err)
	}
	want := []types.ImageFailureCode{"ImageNotFound", "ImageNotFound", "ImageTagDoesNotMatchDigest", "InvalidImageDigest"}
	if len(out.Failures) != len(want) || len(out.Images) != 1 {
		t.Fatalf("failures %+v images %d", out.Failures, len(out.Images))
	}
	for i, f := range out.Failures {
		if f.FailureCode != want[i] || aws.ToString(f.FailureReason) == "" {
			t.Errorf("failure %d: %s %q", i, f.FailureCode, aws.ToString(f.FailureReason))
		}
	}
	if aws.ToString(out.Failures[0].ImageId.ImageDigest) != other || aws.ToString(out.Failures[0].FailureReason) != "Requested image not found" {
		t.Errorf("failure echoes %+v", out.Failures[0])
	}

	// acceptedMediaTypes that exclude the stored type: no conversion, a failure.
	out, err = e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String("team/app"), ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
		AcceptedMediaTypes: []string{"application/vnd.docker.distribution.manifest.v2+json"},
	})
	if err != nil || len(out.Images) != 0 || len(out.Failures) != 1 || out.Failures[0].FailureCode != "ImageNotFound" {
		t.Fatalf("not accepted: %v %+v", err, out)
	}

	// A missing repository fails the whole call, like ECR.
	_, err = e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String("team/none"), ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
	})
	if _, ok := errors.AsType[*types.RepositoryNotFoundException](err); !ok {
		t.Fatalf("missing repository: %v", err)
	}
}

func TestCreateRepositoryRecordsSettings(t *testing.T) {
	e := start(t, registry.Options{RegistryID: "123456789012", Region: "eu-west-1"})
	ctx := ctxT(t)
	in := &ecr.CreateRepositoryInput{
		RepositoryName:             aws.String("gpuaas/p2/chart"),
		ImageTagMutability:         types.ImageTagMutabilityImmutable,
		ImageScanningConfiguration: &types.ImageScanningConfiguration{ScanOnPush: true},
		EncryptionConfiguration:    &types.EncryptionConfiguration{EncryptionType: types.EncryptionTypeKms, KmsKey: aws.String("arn:aws:kms:eu-west-1:123456789012:key/k")},
	}
	out, err := e.ecr.CreateRepository(ctx, in)
	if err != nil {
		t.Fatalf("CreateRepository: %v", err)
	}
	check := func(r *types.Repository) {
		t.Helper()
		if r.ImageTagMutability != types.ImageTagMutabilityImmutable || r.ImageScanningConfiguration == nil || !r.ImageScanningConfiguration.ScanOnPush ||
			r.EncryptionConfiguration == nil || r.EncryptionConfiguration.EncryptionType != types.EncryptionTypeKms ||
			aws.ToString(r.EncryptionConfiguration.KmsKey) != "arn:aws:kms:eu-west-1:123456789012:key/k" ||
			aws.ToString(r.RegistryId) != "123456789012" || aws.ToString(r.RepositoryArn) != "arn:aws:ecr:eu-west-1:123456789012:repository/gpuaas/p2/chart" ||
			r.CreatedAt == nil || time.Since(*r.CreatedAt) > time.Minute {
			t.Errorf("repository %+v", r)
		}
	}
	check(out.Repository)
	if _, err := e.ecr.CreateRepository(ctx, in); err == nil {
		t.Fatal("second CreateRepository succeeded")
	} else if _, ok := errors.AsType[*types.RepositoryAlreadyExistsException](err); !ok {
		t.Fatalf("second CreateRepository: %v", err)
	}
	dr, err := e.ecr.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{})
	if err != nil || len(dr.Repositories) != 1 {
		t.Fatalf("DescribeRepositories: %v %+v", err, dr)
	}
	check(&dr.Repositories[0])

	// Created but empty: images are ImageNotFound, not RepositoryNotFound.
	bg, err := e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String("gpuaas/p2/chart"), ImageIds: []types.ImageIdentifier{{ImageTag: aws.String("x")}},
	})
	if err != nil || len(bg.Failures) != 1 || bg.Failures[0].FailureCode != "ImageNotFound" {
		t.Fatalf("empty repository: %v %+v", err, bg)
	}
	if _, err := e.ecr.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"gpuaas/p2/none"}}); err == nil {
		t.Fatal("DescribeRepositories of a missing repository succeeded")
	} else if _, ok := errors.AsType[*types.RepositoryNotFoundException](err); !ok {
		t.Fatalf("DescribeRepositories missing: %v", err)
	}
	if _, err := e.ecr.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("Bad_Name/")}); err == nil {
		t.Fatal("invalid name accepted")
	} else if _, ok := errors.AsType[*types.InvalidParameterException](err); !ok {
		t.Fatalf("invalid name: %v", err)
	}
}

func TestImmutableRepositoryRefusesTagOverwrite(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	if _, err := e.ecr.CreateRepository(ctx, &ecr.CreateRepositoryInput{
		RepositoryName: aws.String("gpuaas/p3/app"), ImageTagMutability: types.ImageTagMutabilityImmutable,
	}); err != nil {
		t.Fatal(err)
	}
	img := ociImage(t)
	_, raw := push(t, e, "gpuaas/p3/app:v1", img)
	// The same manifest again (go-containerregistry's client would skip the
	// PUT after a HEAD, so send it raw): refused, as ECR does.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, e.url+"/v2/gpuaas/p3/app/manifests/v1", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "TAG_INVALID") {
		t.Fatalf("same manifest to an immutable tag: %d %s", resp.StatusCode, b)
	}
	// Another image under the same tag.
	r, _ := name.ParseReference(e.host + "/gpuaas/p3/app:v1")
	if err := remote.Write(r, ociImage(t), remote.WithContext(ctx)); err == nil || !strings.Contains(err.Error(), "TAG_INVALID") {
		t.Fatalf("other image to an immutable tag: %v", err)
	}
	other := ociImage(t)
	d, _ := other.Digest()
	push(t, e, "gpuaas/p3/app@"+d.String(), other) // by digest is fine
	push(t, e, "gpuaas/p3/app:v2", other)
}

func TestOnPushByTagOnly(t *testing.T) {
	var mu sync.Mutex
	var events []registry.PushEvent
	e := start(t, registry.Options{OnPush: func(ev registry.PushEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}})
	img := ociImage(t)
	digest, _ := push(t, e, "gpuaas/p4/app:v1", img)
	push(t, e, "gpuaas/p4/app:latest", img)
	byDigest := ociImage(t)
	d2, _ := byDigest.Digest()
	push(t, e, "gpuaas/p4/app@"+d2.String(), byDigest)

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 {
		t.Fatalf("events %+v", events)
	}
	for i, tag := range []string{"v1", "latest"} {
		ev := events[i]
		if ev.Repository != "gpuaas/p4/app" || ev.Tag != tag || ev.Digest != digest || ev.RegistryID != "000000000000" ||
			ev.MediaType != "application/vnd.oci.image.manifest.v1+json" || ev.ArtifactMediaType != "application/vnd.oci.image.config.v1+json" || ev.Time.IsZero() {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
}

// rawManifest is a remote.Taggable for a hand-written manifest.
type rawManifest struct {
	b  []byte
	mt ggtypes.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)          { return r.b, nil }
func (r rawManifest) MediaType() (ggtypes.MediaType, error) { return r.mt, nil }

func TestReferrers(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	subject, _ := push(t, e, "gpuaas/p5/app:v1", ociImage(t))
	repo, _ := name.NewRepository(e.host + "/gpuaas/p5/app")

	// An OCI 1.1 artifact: empty config, one layer, artifactType, subject.
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	payload := static.NewLayer([]byte(`{"bundle":true}`), "application/vnd.dev.sigstore.bundle.v0.3+json")
	for _, l := range []v1.Layer{cfg, payload} {
		if err := remote.WriteLayer(repo, l, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(l v1.Layer) map[string]any {
		d, _ := l.Digest()
		s, _ := l.Size()
		mt, _ := l.MediaType()
		return map[string]any{"mediaType": mt, "digest": d.String(), "size": s}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  "application/vnd.dev.sigstore.bundle.v0.3+json",
		"config":        desc(cfg),
		"layers":        []any{desc(payload)},
		"subject":       map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
		"annotations":   map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
	})
	h, _, _ := v1.SHA256(bytes.NewReader(manifest))

	// A raw PUT answers OCI-Subject, so OCI 1.1 clients skip the tag fallback.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, e.url+"/v2/gpuaas/p5/app/manifests/"+h.String(), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != subject {
		t.Fatalf("PUT: %d OCI-Subject=%q", resp.StatusCode, resp.Header.Get("OCI-Subject"))
	}
	// And through go-containerregistry's client, which must not fall back to a sha256-<hex> tag.
	if err := remote.Put(repo.Digest(h.String()), rawManifest{manifest, ggtypes.OCIManifestSchema1}, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	if tags, err := remote.List(repo, remote.WithContext(ctx)); err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("tags %v %v", tags, err)
	}

	get := func(query string) (idx v1.IndexManifest, filters string) {
		t.Helper()
		resp, err := http.Get(e.url + "/v2/gpuaas/p5/app/referrers/" + subject + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("referrers: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		return idx, resp.Header.Get("OCI-Filters-Applied")
	}
	idx, _ := get("")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != h || idx.Manifests[0].ArtifactType != "application/vnd.dev.sigstore.bundle.v0.3+json" ||
		idx.Manifests[0].Size != int64(len(manifest)) || idx.Manifests[0].Annotations["org.opencontainers.image.created"] == "" {
		t.Fatalf("referrers %+v", idx.Manifests)
	}
	if idx, f := get("?artifactType=application/vnd.dev.sigstore.bundle.v0.3%2Bjson"); len(idx.Manifests) != 1 || f != "artifactType" {
		t.Errorf("filtered in: %+v %q", idx.Manifests, f)
	}
	if idx, f := get("?artifactType=application/other"); len(idx.Manifests) != 0 || f != "artifactType" {
		t.Errorf("filtered out: %+v %q", idx.Manifests, f)
	}
	ri, err := remote.Referrers(repo.Digest(subject), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := ri.IndexManifest(); len(im.Manifests) != 1 {
		t.Errorf("remote.Referrers %+v", im)
	}
	// DescribeImages reports the artifact and its subject.
	di, err := e.ecr.DescribeImages(ctx, &ecr.DescribeImagesInput{
		RepositoryName: aws.String("gpuaas/p5/app"), ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(h.String())}},
	})
	if err != nil || len(di.ImageDetails) != 1 || aws.ToString(di.ImageDetails[0].SubjectManifestDigest) != subject ||
		aws.ToString(di.ImageDetails[0].ArtifactMediaType) != "application/vnd.dev.sigstore.bundle.v0.3+json" {
		t.Fatalf("DescribeImages: %v %+v", err, di)
	}
}

func TestECRWireFormatAndFaults(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	post := func(op, body string) (int, http.Header, map[string]string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921."+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, resp.Header, m
	}
	status, hdr, m := post("BatchGetImage", `{"repositoryName":"none/here","imageIds":[{"imageTag":"v1"}]}`)
	if status != 400 || hdr.Get("Content-Type") != "application/x-amz-json-1.1" || m["__type"] != "RepositoryNotFoundException" ||
		m["message"] != "The repository with name 'none/here' does not exist in the registry with id '000000000000'" {
		t.Errorf("wire error: %d %v %v", status, hdr, m)
	}
	if status, _, m := post("PutImage", `{}`); status != 400 || m["__type"] != "UnknownOperationException" {
		t.Errorf("unknown op: %d %v", status, m)
	}

	code := func(err error) string {
		if ae, ok := errors.AsType[smithy.APIError](err); ok {
			return ae.ErrorCode()
		}
		return fmt.Sprint(err)
	}
	in := &ecr.DescribeRepositoriesInput{}
	e.reg.FailECR("DescribeRepositories", registry.ErrThrottling)
	if _, err := e.ecr.DescribeRepositories(ctx, in); code(err) != "ThrottlingException" {
		t.Errorf("throttling: %v", err)
	}
	e.reg.FailECR("DescribeRepositories", errors.New("disk on fire"))
	_, err := e.ecr.DescribeRepositories(ctx, in)
	if _, ok := errors.AsType[*types.ServerException](err); !ok || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("server: %v", err)
	}
	if _, err := e.ecr.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("other/op")}); err != nil {
		t.Errorf("fault leaked to another op: %v", err)
	}
	e.reg.FailECR("DescribeRepositories", nil)
	if _, err := e.ecr.DescribeRepositories(ctx, in); err != nil {
		t.Errorf("after clear: %v", err)
	}
	e.reg.FailECR("*", registry.ErrServer)
	if _, err := e.ecr.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("other/op")}); code(err) != "ServerException" {
		t.Errorf("wildcard: %v", err)
	}
	e.reg.FailECR("*", nil)
}

func TestDeleteByDigestRemovesImageAndTags(t *testing.T) {
	e := start(t, registry.Options{})
	ctx := ctxT(t)
	digest, _ := push(t, e, "team/del:v1", ociImage(t))
	keep, _ := push(t, e, "team/del:v2", ociImage(t))
	r, _ := name.ParseReference(e.host + "/team/del@" + digest)
	if err := remote.Delete(r, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	di, err := e.ecr.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/del"), Filter: &types.DescribeImagesFilter{TagStatus: types.TagStatusTagged}})
	if err != nil || len(di.ImageDetails) != 1 || aws.ToString(di.ImageDetails[0].ImageDigest) != keep {
		t.Fatalf("after delete: %v %+v", err, di)
	}
	tr, _ := name.ParseReference(e.host + "/team/del:v1")
	if _, err := remote.Head(tr, remote.WithContext(ctx)); err == nil {
		t.Error("tag v1 still resolves after its image was deleted")
	}
}

func TestConcurrentPushesAndReads(t *testing.T) {
	var mu sync.Mutex
	n := 0
	e := start(t, registry.Options{OnPush: func(registry.PushEvent) { mu.Lock(); n++; mu.Unlock() }})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	imgs := make([]v1.Image, 8)
	for i := range imgs {
		imgs[i] = ociImage(t)
	}
	for i, img := range imgs {
		wg.Go(func() {
			r, _ := name.ParseReference(fmt.Sprintf("%s/team/conc:t%d", e.host, i))
			if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
				errs <- err
				return
			}
			d, _ := img.Digest()
			out, err := e.ecr.BatchGetImage(ctx, &ecr.BatchGetImageInput{
				RepositoryName: aws.String("team/conc"), ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(d.String())}},
			})
			if err != nil || len(out.Images) != 1 {
				errs <- fmt.Errorf("read back %d: %v %+v", i, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 8 {
		t.Errorf("%d push events, want 8", n)
	}
}

// startOpen is start over a registry kept in dir.
func startOpen(t *testing.T, dir string, opts registry.Options) *env {
	t.Helper()
	opts.StateDir = dir
	reg, err := registry.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	e := start(t, registry.Options{})
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	e.reg, e.url, e.host = reg, srv.URL, strings.TrimPrefix(srv.URL, "http://")
	e.ecr = ecr.NewFromConfig(aws.Config{Region: "us-east-1", HTTPClient: awshttp.NewBuildableClient(),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}, func(o *ecr.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	return e
}

// TestStateSurvivesARestart: with a state folder, repositories (and their
// settings), manifests byte for byte, tags, blobs and deletions are there
// after the registry is opened again, and replaying them announces no push.
func TestStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	var pushes []string
	var mu sync.Mutex
	onPush := func(ev registry.PushEvent) { mu.Lock(); pushes = append(pushes, ev.Tag); mu.Unlock() }
	first := startOpen(t, dir, registry.Options{OnPush: onPush})
	if _, err := first.ecr.CreateRepository(ctxT(t), &ecr.CreateRepositoryInput{RepositoryName: aws.String("gpuaas/o/p/kept"),
		ImageTagMutability: types.ImageTagMutabilityImmutable}); err != nil {
		t.Fatal(err)
	}
	keptImg, gone := ociImage(t), ociImage(t)
	kept, raw := push(t, first, "gpuaas/o/p/kept:1.0.0", keptImg)
	dropped, _ := push(t, first, "gpuaas/o/p/kept:0.9.0", gone)
	ref, _ := name.ParseReference(first.host + "/gpuaas/o/p/kept@" + dropped)
	if err := remote.Delete(ref, remote.WithContext(ctxT(t))); err != nil {
		t.Fatal(err)
	}
	first.reg.Close()

	pushes = nil
	again := startOpen(t, dir, registry.Options{OnPush: onPush})
	if len(pushes) != 0 {
		t.Fatalf("replay announced pushes %v", pushes)
	}
	out, err := again.ecr.BatchGetImage(ctxT(t), &ecr.BatchGetImageInput{RepositoryName: aws.String("gpuaas/o/p/kept"),
		ImageIds: []types.ImageIdentifier{{ImageDigest: aws.String(kept)}, {ImageDigest: aws.String(dropped)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 1 || aws.ToString(out.Images[0].ImageManifest) != string(raw) || len(out.Failures) != 1 {
		t.Fatalf("after restart: %d images, %d failures", len(out.Images), len(out.Failures))
	}
	repos, err := again.ecr.DescribeRepositories(ctxT(t), &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"gpuaas/o/p/kept"}})
	if err != nil || repos.Repositories[0].ImageTagMutability != types.ImageTagMutabilityImmutable {
		t.Fatalf("repository after restart: %v %+v", err, repos)
	}
	// The layers are there too: the image pulls whole, by its tag.
	tagRef, _ := name.ParseReference(again.host + "/gpuaas/o/p/kept:1.0.0")
	img, err := remote.Image(tagRef, remote.WithContext(ctxT(t)))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer after restart: %v", err)
		}
		rc.Close()
	}
	// And the tag is still immutable.
	if err := remote.Write(tagRef, ociImage(t), remote.WithContext(ctxT(t))); err == nil {
		t.Fatal("overwrote an immutable tag after a restart")
	}
}
