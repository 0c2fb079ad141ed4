package cloud

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// Options place the local cloud.
type Options struct {
	RepoRoot   string // where template.yaml is
	StateDir   string // .local: signing key, cursor secret, saved table
	APIAddr    string // 127.0.0.1:3000
	DynamoAddr string // 127.0.0.1:8000
	Log        io.Writer
}

// Stack is the running local cloud.
type Stack struct {
	APIURL   string
	Dynamo   *Dynamo
	Key      *rsa.PrivateKey
	Template *samtemplate.Template
	api      *http.Server
	apiDone  chan error
	log      *slog.Logger
}

// LoadTemplate reads template.yaml with the local parameters.
func LoadTemplate(repoRoot, stateDir string) (*samtemplate.Template, error) {
	secret, err := LoadOrCreateCursorSecret(stateDir)
	if err != nil {
		return nil, err
	}
	return samtemplate.Load(filepath.Join(repoRoot, "template.yaml"), LocalParams(secret))
}

// FunctionEnv is a function's environment as Lambda would see it locally:
// the template's (Globals merged) with the SDK pointed at the local endpoints.
func FunctionEnv(tmpl *samtemplate.Template, logicalID, dynamoURL string) (map[string]string, error) {
	env, err := tmpl.FunctionEnv(logicalID, map[string]string{TableLogicalID: LocalTableName})
	if err != nil {
		return nil, err
	}
	env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamoURL
	env["AWS_REGION"] = "us-east-1"
	env["AWS_DEFAULT_REGION"] = "us-east-1"
	env["AWS_ACCESS_KEY_ID"] = "local"
	env["AWS_SECRET_ACCESS_KEY"] = "local"
	return env, nil
}

// Start runs DynamoDB and the API. Close stops them and saves the table.
func Start(opts Options) (*Stack, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	s := &Stack{log: slog.New(slog.NewJSONHandler(opts.Log, nil)).With("service", "local-cloud")}
	tmpl, err := LoadTemplate(opts.RepoRoot, opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("cloud.Start: %w", err)
	}
	s.Template = tmpl
	if s.Key, err = LoadOrCreateKey(opts.StateDir); err != nil {
		return nil, err
	}
	// Bind the API port first: a taken port fails before anything starts.
	apiL, err := Listen(opts.APIAddr)
	if err != nil {
		return nil, err
	}
	if s.Dynamo, err = StartDynamo(opts.DynamoAddr, tmpl, LocalTableName, filepath.Join(opts.StateDir, StateFileName)); err != nil {
		apiL.Close()
		return nil, err
	}
	handlers := map[string]LambdaHandler{}
	for _, r := range tmpl.Routes() {
		h, err := s.function(tmpl, r.LogicalID, opts.Log)
		if err != nil {
			apiL.Close()
			s.Dynamo.Close()
			return nil, err
		}
		handlers[r.LogicalID] = h
	}
	gw, err := NewGateway(tmpl, handlers, func(a *samtemplate.Authorizer) *Authorizer {
		return &Authorizer{Key: &s.Key.PublicKey, Issuer: a.Issuer, Audiences: a.Audience}
	}, s.log)
	if err != nil {
		apiL.Close()
		s.Dynamo.Close()
		return nil, err
	}
	s.APIURL = "http://" + apiL.Addr().String()
	s.api = &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	s.apiDone = make(chan error, 1)
	go func() { s.apiDone <- s.api.Serve(apiL) }()
	return s, nil
}

// function builds a route's handler in-process from its template environment.
func (s *Stack) function(tmpl *samtemplate.Template, logicalID string, logw io.Writer) (LambdaHandler, error) {
	rt, ok := httpapi.RouteByLogicalID(logicalID)
	if !ok {
		return nil, fmt.Errorf("cloud: template function %s has no route in shared/httpapi", logicalID)
	}
	env, err := FunctionEnv(tmpl, logicalID, s.Dynamo.URL)
	if err != nil {
		return nil, err
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		return nil, fmt.Errorf("cloud: %s: %w", logicalID, err)
	}
	awsCfg := aws.Config{
		Region:      env["AWS_REGION"],
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], ""),
		HTTPClient:  awshttp.NewBuildableClient(),
	}
	h, err := app.NewHandler(rt.Name, cfg, awsCfg, logw)
	if err != nil {
		return nil, err
	}
	return h.Handle, nil
}

// WaitReady returns once the API answers HTTP, or ctx ends.
func (s *Stack) WaitReady(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.APIURL+"/", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cloud: API did not answer: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the API, saves the table and stops DynamoDB.
func (s *Stack) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := []error{s.api.Shutdown(ctx)}
	errs = append(errs, s.Dynamo.Save(), s.Dynamo.Close())
	return errors.Join(errs...)
}
