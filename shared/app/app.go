package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/oklog/ulid/v2"

	"github.com/gpuaas/app-artifacts/shared/cursor"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
)

// Config is every setting a function reads, all from the environment.
type Config struct {
	TableName    string // TABLE_NAME
	RegistryHost string // REGISTRY_HOST
	CursorSecret string // CURSOR_SECRET, at least 32 bytes; only the list routes have (and need) it
	Stage        string // STAGE
	// DynamoDBEndpoint (AWS_ENDPOINT_URL_DYNAMODB, the SDK's own variable)
	// points the client elsewhere than AWS; unset on AWS.
	DynamoDBEndpoint string
	// ECREndpoint and EventBridgeEndpoint: AWS_ENDPOINT_URL_ECR and
	// AWS_ENDPOINT_URL_EVENTBRIDGE, likewise.
	ECREndpoint         string
	EventBridgeEndpoint string
	// EventBusName (EVENT_BUS_NAME) is the bus the publisher puts events on.
	EventBusName string
	// PullThroughPrefix (PULL_THROUGH_REPOSITORY_PREFIX) is the namespace of
	// the registry's pull-through caches; default "pull-through".
	PullThroughPrefix string
}

// ConfigFromEnv reads Config with lookup (os.Getenv in production).
func ConfigFromEnv(lookup func(string) string) (*Config, error) {
	c := &Config{
		TableName: lookup("TABLE_NAME"), RegistryHost: lookup("REGISTRY_HOST"),
		CursorSecret: lookup("CURSOR_SECRET"), Stage: lookup("STAGE"),
		DynamoDBEndpoint: lookup("AWS_ENDPOINT_URL_DYNAMODB"), ECREndpoint: lookup("AWS_ENDPOINT_URL_ECR"),
		EventBridgeEndpoint: lookup("AWS_ENDPOINT_URL_EVENTBRIDGE"), EventBusName: lookup("EVENT_BUS_NAME"),
		PullThroughPrefix: lookup("PULL_THROUGH_REPOSITORY_PREFIX"),
	}
	var missing []string
	for name, v := range map[string]string{"TABLE_NAME": c.TableName, "REGISTRY_HOST": c.RegistryHost} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("app.ConfigFromEnv: missing %s", strings.Join(missing, ", "))
	}
	if c.CursorSecret != "" && len(c.CursorSecret) < 32 {
		return nil, errors.New("app.ConfigFromEnv: CURSOR_SECRET must be at least 32 bytes")
	}
	return c, nil
}

// NewID returns prefix_<ULID>: unique, and sortable by creation time.
func NewID(prefix string) string { return prefix + "_" + ulid.Make().String() }

// DynamoDBOptions counts every round trip for the request log line.
func DynamoDBOptions(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, obs.CountCalls) }

// NewService builds the lifecycle service over DynamoDB.
func NewService(cfg *Config, ddb dynamo.API) (*lifecycle.Service, error) {
	var cur *cursor.Codec
	if cfg.CursorSecret != "" {
		var err error
		if cur, err = cursor.New([]byte(cfg.CursorSecret)); err != nil {
			return nil, err
		}
	}
	return &lifecycle.Service{
		Store: dynamo.New(ddb, cfg.TableName), Cursor: cur, RegistryHost: cfg.RegistryHost,
		PullThroughPrefix: cfg.PullThroughPrefix, Now: time.Now, NewID: NewID,
	}, nil
}

// NewLifecycle is the lifecycle service over the function's DynamoDB table and ECR.
func NewLifecycle(cfg *Config, awsCfg aws.Config) (*lifecycle.Service, error) {
	svc, err := NewService(cfg, dynamodb.NewFromConfig(awsCfg, DynamoDBOptions, func(o *dynamodb.Options) {
		if cfg.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.DynamoDBEndpoint)
		}
	}))
	if err != nil {
		return nil, err
	}
	return svc, nil
}

// Option adds to a function's wiring what only some functions need, so
// the others do not link (and initialise) the clients it brings.
type Option func(cfg *Config, awsCfg aws.Config, svc *lifecycle.Service)

// WithRepositories gives the service the platform registry (ECR), built by
// newRepos from the function's AWS config and ECR endpoint override.
func WithRepositories[R lifecycle.Repositories](newRepos func(awsCfg aws.Config, endpoint string) R) Option {
	return func(cfg *Config, awsCfg aws.Config, svc *lifecycle.Service) {
		svc.Repositories = newRepos(awsCfg, cfg.ECREndpoint)
	}
}

// NewHandler builds the handler of the named route from cfg and aws config;
// its request lines go to logw (stdout on Lambda, which ships them to CloudWatch).
func NewHandler(routeName string, cfg *Config, awsCfg aws.Config, logw io.Writer, opts ...Option) (*httpapi.Handler, error) {
	rt, ok := httpapi.RouteByName(routeName)
	if !ok {
		return nil, fmt.Errorf("app.NewHandler: no route %q", routeName)
	}
	if rt.Pages && cfg.CursorSecret == "" {
		return nil, fmt.Errorf("app.NewHandler: %s pages its answers and needs CURSOR_SECRET", routeName)
	}
	svc, err := NewLifecycle(cfg, awsCfg)
	if err != nil {
		return nil, fmt.Errorf("app.NewHandler: %w", err)
	}
	for _, o := range opts {
		o(cfg, awsCfg, svc)
	}
	return &httpapi.Handler{
		Route: rt, Service: svc, Logger: obs.NewLogger(logw, routeName),
		NewCorrelationID: func() string { return NewID("cid") }, Now: time.Now,
	}, nil
}

// HTTPHandler is what functions/<route>/main.go calls: the environment's
// configuration, AWS clients (no network call), the route's handler.
func HTTPHandler(ctx context.Context, routeName string, opts ...Option) (*httpapi.Handler, error) {
	cfg, awsCfg, err := Load(os.Getenv)
	if err != nil {
		return nil, err
	}
	return NewHandler(routeName, cfg, awsCfg, os.Stdout, opts...)
}

// MustHTTPHandler is HTTPHandler for main: a function that cannot be
// configured logs why in one JSON line and exits, so Lambda reports an init error.
func MustHTTPHandler(routeName string, opts ...Option) *httpapi.Handler {
	h, err := HTTPHandler(context.Background(), routeName, opts...)
	ExitOnInitError(routeName, err)
	return h
}

// Load reads a function's configuration and builds its AWS configuration
// from the environment Lambda gives it: region and the execution role's
// credentials. Nothing is fetched (no network call at init), and the SDK's
// shared-config loader, with its SSO, STS and IMDS clients, is not linked in,
// which keeps binaries small and cold starts short.
func Load(lookup func(string) string) (*Config, aws.Config, error) {
	cfg, err := ConfigFromEnv(lookup)
	if err != nil {
		return nil, aws.Config{}, err
	}
	region := lookup("AWS_REGION")
	if region == "" {
		region = lookup("AWS_DEFAULT_REGION")
	}
	if region == "" {
		return nil, aws.Config{}, errors.New("app.Load: AWS_REGION is not set")
	}
	id, secret := lookup("AWS_ACCESS_KEY_ID"), lookup("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		return nil, aws.Config{}, errors.New("app.Load: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
	}
	return cfg, aws.Config{
		Region:      region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, lookup("AWS_SESSION_TOKEN"))),
		HTTPClient:  awshttp.NewBuildableClient(),
		Retryer:     func() aws.Retryer { return retry.NewStandard() },
	}, nil
}

// ExitOnInitError ends a function whose init failed, after one JSON line
// saying why, so Lambda reports an init error.
func ExitOnInitError(function string, err error) {
	if err != nil {
		obs.NewLogger(os.Stdout, function).Error("init failed", "error", err.Error())
		os.Exit(1)
	}
}
