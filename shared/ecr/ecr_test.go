package ecr_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsecr "github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/infra/local/registry"
	"github.com/gpuaas/app-artifacts/shared/ecr"
)

const maxAttempts = 2

type env struct {
	reg   *registry.Registry
	url   string
	host  string
	sdk   *awsecr.Client
	ecr   *ecr.Client
	calls atomic.Int64 // ECR API requests seen, retries included
	stall atomic.Bool  // ECR API requests hang until the client gives up
}

func sdkClient(url string) *awsecr.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:  awshttp.NewBuildableClient(), // honours AWS_CA_BUNDLE like production
	}
	return awsecr.NewFromConfig(cfg, func(o *awsecr.Options) {
		o.BaseEndpoint = aws.String(url)
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			so.RateLimiter = ratelimit.None
		})
	})
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{reg: registry.New(registry.Options{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "" {
			e.calls.Add(1)
			if e.stall.Load() {
				// Read the body first: only then does the server notice the
				// client hanging up and cancel the request's context.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
		}
		e.reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.url, e.host = srv.URL, strings.TrimPrefix(srv.URL, "http://")
	e.sdk = sdkClient(srv.URL)
	e.ecr = ecr.New(e.sdk, "")
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pushRandom pushes a random OCI image by tag and returns its digest and manifest.
func pushRandom(t *testing.T, e *env, repoTag string) (string, []byte) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, ggtypes.OCIManifestSchema1), ggtypes.OCIConfigJSON)
	ref, err := name.ParseReference(e.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctxT(t))); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	return d.String(), raw
}

func TestManifest(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	digest, raw := pushRandom(t, e, "gpuaas/p1/app:v1")

	got, mt, err := e.ecr.ImageManifest(ctx, "gpuaas/p1/app", digest)
	if err != nil {
		t.Fatalf("Manifest: %v", err)
	}
	if string(got) != string(raw) || mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("got %q %s\nwant %q", got, mt, raw)
	}

	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ecr.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
		if _, ok := errors.AsType[*ecr.TransientError](err); ok {
			t.Errorf("%s: transient", what)
		}
	}
	_, _, err = e.ecr.ImageManifest(ctx, "gpuaas/p1/app", "sha256:"+strings.Repeat("a", 64))
	notFound("unknown digest", err)
	_, _, err = e.ecr.ImageManifest(ctx, "gpuaas/p1/nothing", digest)
	notFound("unknown repository", err)

	_, _, err = e.ecr.ImageManifest(ctx, "gpuaas/p1/app", "sha256:short")
	if err == nil || errors.Is(err, ecr.ErrNotFound) {
		t.Errorf("invalid digest: %v", err)
	}
}

func TestManifestTransient(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	digest, _ := pushRandom(t, e, "gpuaas/p1/app:v1")

	for _, fault := range []error{registry.ErrThrottling, registry.ErrServer} {
		e.reg.FailECR("BatchGetImage", fault)
		before := e.calls.Load()
		_, _, err := e.ecr.ImageManifest(ctx, "gpuaas/p1/app", digest)
		te, ok := errors.AsType[*ecr.TransientError](err)
		if !ok || errors.Is(err, ecr.ErrNotFound) || te.Op != "BatchGetImage" {
			t.Errorf("%v: got %v, want a TransientError", fault, err)
		}
		if n := e.calls.Load() - before; n != maxAttempts {
			t.Errorf("%v: %d attempts, want %d (the SDK retries)", fault, n, maxAttempts)
		}
	}
	e.reg.FailECR("BatchGetImage", nil)
	if _, _, err := e.ecr.ImageManifest(ctx, "gpuaas/p1/app", digest); err != nil {
		t.Fatalf("after clearing the fault: %v", err)
	}

	// A timeout: the registry hangs past the caller's deadline.
	e.stall.Store(true)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, _, err := e.ecr.ImageManifest(short, "gpuaas/p1/app", digest)
	cancel()
	e.stall.Store(false)
	if _, ok := errors.AsType[*ecr.TransientError](err); !ok {
		t.Errorf("timeout: %v, want a TransientError", err)
	}

	// Nobody listening.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	_, _, err = ecr.New(sdkClient(dead.URL), "").ImageManifest(ctx, "gpuaas/p1/app", digest)
	if _, ok := errors.AsType[*ecr.TransientError](err); !ok {
		t.Errorf("connection refused: %v, want a TransientError", err)
	}
}

func TestEnsureRepository(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	for i := range 2 {
		if err := e.ecr.EnsureRepository(ctx, "gpuaas/p9/app"); err != nil {
			t.Fatalf("EnsureRepository #%d: %v", i+1, err)
		}
	}
	out, err := e.sdk.DescribeRepositories(ctx, &awsecr.DescribeRepositoriesInput{RepositoryNames: []string{"gpuaas/p9/app"}})
	if err != nil {
		t.Fatal(err)
	}
	r := out.Repositories[0]
	if r.ImageTagMutability != types.ImageTagMutabilityImmutable || !r.ImageScanningConfiguration.ScanOnPush ||
		r.EncryptionConfiguration.EncryptionType != types.EncryptionTypeAes256 {
		t.Fatalf("repository %+v", r)
	}

	e.reg.FailECR("CreateRepository", registry.ErrThrottling)
	if _, ok := errors.AsType[*ecr.TransientError](e.ecr.EnsureRepository(ctx, "gpuaas/p9/other")); !ok {
		t.Error("throttled CreateRepository is not transient")
	}
	e.reg.FailECR("CreateRepository", registry.ErrServer)
	if _, ok := errors.AsType[*ecr.TransientError](e.ecr.EnsureRepository(ctx, "gpuaas/p9/other")); !ok {
		t.Error("failing CreateRepository is not transient")
	}
	e.reg.FailECR("CreateRepository", nil)
	err = e.ecr.EnsureRepository(ctx, "Invalid Name")
	if _, ok := errors.AsType[*ecr.TransientError](err); ok || err == nil {
		t.Errorf("invalid name: %v, want a plain error", err)
	}
	if got := e.reg.Repositories(); len(got) != 1 {
		t.Errorf("repositories %v", got)
	}
}

// fakeAPI answers with fixed results, for the responses a local registry
// does not produce.
type fakeAPI struct {
	get    *awsecr.BatchGetImageOutput
	getErr error
	create error
}

func (f fakeAPI) BatchGetImage(context.Context, *awsecr.BatchGetImageInput, ...func(*awsecr.Options)) (*awsecr.BatchGetImageOutput, error) {
	return f.get, f.getErr
}

func (f fakeAPI) CreateRepository(context.Context, *awsecr.CreateRepositoryInput, ...func(*awsecr.Options)) (*awsecr.CreateRepositoryOutput, error) {
	return &awsecr.CreateRepositoryOutput{}, f.create
}

func TestClassification(t *testing.T) {
	ctx := ctxT(t)
	d := "sha256:" + strings.Repeat("b", 64)
	failure := func(code types.ImageFailureCode) *awsecr.BatchGetImageOutput {
		return &awsecr.BatchGetImageOutput{Failures: []types.ImageFailure{{
			FailureCode: code, FailureReason: aws.String("r"), ImageId: &types.ImageIdentifier{ImageDigest: aws.String(d)},
		}}}
	}
	for _, tc := range []struct {
		name      string
		api       fakeAPI
		notFound  bool
		transient bool
	}{
		{"ImageNotFoundException", fakeAPI{getErr: &types.ImageNotFoundException{Message: aws.String("x")}}, true, false},
		{"failure UpstreamUnavailable", fakeAPI{get: failure(types.ImageFailureCodeUpstreamUnavailable)}, false, true},
		{"failure KmsError", fakeAPI{get: failure(types.ImageFailureCodeKmsError)}, false, true},
		{"failure InvalidImageDigest", fakeAPI{get: failure(types.ImageFailureCodeInvalidImageDigest)}, false, false},
		{"empty response", fakeAPI{get: &awsecr.BatchGetImageOutput{}}, false, false},
		{"deadline", fakeAPI{getErr: context.DeadlineExceeded}, false, true},
		{"access denied", fakeAPI{getErr: errors.New("AccessDeniedException")}, false, false},
	} {
		_, _, err := ecr.New(tc.api, "123456789012").ImageManifest(ctx, "r/p", d)
		_, transient := errors.AsType[*ecr.TransientError](err)
		if err == nil || errors.Is(err, ecr.ErrNotFound) != tc.notFound || transient != tc.transient {
			t.Errorf("%s: %v (notFound want %v, transient want %v)", tc.name, err, tc.notFound, tc.transient)
		}
	}

	// No media type reported: the manifest's own mediaType field.
	api := fakeAPI{get: &awsecr.BatchGetImageOutput{Images: []types.Image{{
		ImageId:       &types.ImageIdentifier{ImageDigest: aws.String(d)},
		ImageManifest: aws.String(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`),
	}}}}
	if _, mt, err := ecr.New(api, "").ImageManifest(ctx, "r/p", d); err != nil || mt != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("fallback media type: %q %v", mt, err)
	}

	if err := ecr.New(fakeAPI{create: &types.LimitExceededException{Message: aws.String("quota")}}, "").EnsureRepository(ctx, "r/p"); err == nil {
		t.Error("LimitExceeded: nil")
	} else if _, ok := errors.AsType[*ecr.TransientError](err); ok {
		t.Errorf("LimitExceeded is a quota, not transient: %v", err)
	}
	if err := ecr.New(fakeAPI{create: &types.RepositoryAlreadyExistsException{}}, "").EnsureRepository(ctx, "r/p"); err != nil {
		t.Errorf("already exists: %v", err)
	}
}
