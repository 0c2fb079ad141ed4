package ecr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"
)

// API is the part of the ECR client the adapter uses.
type API interface {
	BatchGetImage(ctx context.Context, in *ecr.BatchGetImageInput, optFns ...func(*ecr.Options)) (*ecr.BatchGetImageOutput, error)
	CreateRepository(ctx context.Context, in *ecr.CreateRepositoryInput, optFns ...func(*ecr.Options)) (*ecr.CreateRepositoryOutput, error)
}

var _ API = (*ecr.Client)(nil)

// ErrNotFound: the image or its repository does not exist.
var ErrNotFound = errors.New("ecr: not found")

// TransientError is a failure worth retrying (throttling, 5xx, timeouts,
// connection failures); it never means the image is absent.
type TransientError struct {
	Op  string
	Err error
}

func (e *TransientError) Error() string { return "ecr: " + e.Op + ": transient: " + e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// AcceptedMediaTypes are the manifest types Manifest asks for; ECR then
// returns every manifest as stored, never converted.
var AcceptedMediaTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// Client reads and creates repositories in one registry.
type Client struct {
	api        API
	registryID *string
}

// New returns a Client over api; registryID "" means the caller's account.
func New(api API, registryID string) *Client {
	c := &Client{api: api}
	if registryID != "" {
		c.registryID = aws.String(registryID)
	}
	return c
}

// validDigest reports whether d is sha256: and 64 lowercase hex digits
// (written out: no regular expression compiled at cold start).
func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ImageManifest reads repository@digest with BatchGetImage and returns the raw
// manifest bytes and the media type ECR reports (the manifest's own
// mediaType field if ECR reports none). A missing image or repository is
// ErrNotFound; throttling, 5xx, timeouts and connection failures are a
// *TransientError; anything else is a plain wrapped error.
func (c *Client) ImageManifest(ctx context.Context, repository, digest string) ([]byte, string, error) {
	const op = "BatchGetImage"
	if !validDigest(digest) {
		return nil, "", fmt.Errorf("ecr: %s: invalid digest %q", op, digest)
	}
	out, err := c.api.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RegistryId:         c.registryID,
		RepositoryName:     aws.String(repository),
		ImageIds:           []types.ImageIdentifier{{ImageDigest: aws.String(digest)}},
		AcceptedMediaTypes: AcceptedMediaTypes,
	})
	if err != nil {
		if _, ok := errors.AsType[*types.RepositoryNotFoundException](err); ok {
			return nil, "", fmt.Errorf("%w: repository %s: %w", ErrNotFound, repository, err)
		}
		if _, ok := errors.AsType[*types.ImageNotFoundException](err); ok {
			return nil, "", fmt.Errorf("%w: image %s@%s: %w", ErrNotFound, repository, digest, err)
		}
		return nil, "", classify(op, err)
	}
	for _, img := range out.Images {
		if img.ImageId == nil || aws.ToString(img.ImageId.ImageDigest) != digest || img.ImageManifest == nil {
			continue
		}
		raw := []byte(*img.ImageManifest)
		mt := aws.ToString(img.ImageManifestMediaType)
		if mt == "" {
			var m struct {
				MediaType string `json:"mediaType"`
			}
			_ = json.Unmarshal(raw, &m)
			mt = m.MediaType
		}
		return raw, mt, nil
	}
	for _, f := range out.Failures {
		reason := fmt.Sprintf("%s: %s", f.FailureCode, aws.ToString(f.FailureReason))
		switch f.FailureCode {
		case types.ImageFailureCodeImageNotFound:
			return nil, "", fmt.Errorf("%w: image %s@%s: %s", ErrNotFound, repository, digest, reason)
		case types.ImageFailureCodeUpstreamTooManyRequests, types.ImageFailureCodeUpstreamUnavailable, types.ImageFailureCodeKmsError:
			return nil, "", &TransientError{Op: op, Err: errors.New(reason)}
		default:
			return nil, "", fmt.Errorf("ecr: %s %s@%s: %s", op, repository, digest, reason)
		}
	}
	return nil, "", fmt.Errorf("ecr: %s %s@%s: response has neither the image nor a failure", op, repository, digest)
}

// EnsureRepository creates the repository with immutable tags, scan on push
// and AES256 encryption; a repository that already exists is success (its
// settings are not compared). Failures are a *TransientError or a plain
// wrapped error.
func (c *Client) EnsureRepository(ctx context.Context, name string) error {
	const op = "CreateRepository"
	_, err := c.api.CreateRepository(ctx, &ecr.CreateRepositoryInput{
		RegistryId:                 c.registryID,
		RepositoryName:             aws.String(name),
		ImageTagMutability:         types.ImageTagMutabilityImmutable,
		ImageScanningConfiguration: &types.ImageScanningConfiguration{ScanOnPush: true},
		EncryptionConfiguration:    &types.EncryptionConfiguration{EncryptionType: types.EncryptionTypeAes256},
	})
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*types.RepositoryAlreadyExistsException](err); ok {
		return nil
	}
	return classify(op, err)
}

// classify wraps err as a *TransientError when retrying could help.
func classify(op string, err error) error {
	if transient(err) {
		return &TransientError{Op: op, Err: err}
	}
	return fmt.Errorf("ecr: %s: %w", op, err)
}

func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	// ECR's LimitExceededException is a service quota, not a rate: not
	// transient, although the SDK retries it as a throttle.
	if _, ok := errors.AsType[*types.LimitExceededException](err); ok {
		return false
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		if ae.ErrorFault() == smithy.FaultServer {
			return true
		}
		if _, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; ok {
			return true
		}
	}
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok {
		if s := re.HTTPStatusCode(); s >= 500 || s == http.StatusTooManyRequests {
			return true
		}
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// FromConfig is the adapter over a new ECR client for awsCfg, pointed at
// endpoint when set (AWS_ENDPOINT_URL_ECR).
func FromConfig(awsCfg aws.Config, endpoint string) *Client {
	return New(ecr.NewFromConfig(awsCfg, func(o *ecr.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), "")
}
