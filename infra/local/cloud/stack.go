package cloud

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/aws/aws-lambda-go/events"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
	"github.com/gpuaas/app-artifacts/infra/local/registry"
	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
	"github.com/gpuaas/app-artifacts/shared/workers"
)

// Options place the local cloud.
type Options struct {
	RepoRoot     string // where template.yaml is
	StateDir     string // .local: signing key, cursor secret, saved table, dead letters
	APIAddr      string // 127.0.0.1:3000
	DynamoAddr   string // 127.0.0.1:8000
	EventsAddr   string // 127.0.0.1:4010
	RegistryAddr string // 127.0.0.1:5000
	Log          io.Writer
	// Backoff, when set, replaces the retry delays of the bus, the stream
	// and the functions' SDK clients (tests use it to keep retries fast;
	// attempt counts stay the template's).
	Backoff func(attempt int) time.Duration
}

// Stack is the running local cloud.
type Stack struct {
	APIURL      string
	EventsURL   string
	RegistryURL string
	Dynamo      *Dynamo
	Stream      *Stream
	Bus         *bus.Bus
	Registry    *registry.Registry
	Key         *rsa.PrivateKey
	Template    *samtemplate.Template
	BusName     string
	servers     []*http.Server
	api         *http.Server
	log         *slog.Logger
	backoff     func(attempt int) time.Duration
}

// LoadTemplate reads template.yaml with the local parameters; registryHost
// is where the local registry answers ("" for the default 127.0.0.1:5000).
func LoadTemplate(repoRoot, stateDir, registryHost string) (*samtemplate.Template, error) {
	secret, err := LoadOrCreateCursorSecret(stateDir)
	if err != nil {
		return nil, err
	}
	return samtemplate.Load(filepath.Join(repoRoot, "template.yaml"), LocalParams(secret, registryHost))
}

// Endpoints are where the local services answer; a function's SDK clients
// are pointed at them through the SDK's own AWS_ENDPOINT_URL_* variables.
type Endpoints struct{ DynamoDB, EventBridge, ECR string }

// FunctionEnv is a function's environment as Lambda would see it locally:
// the template's (Globals merged) with the SDK pointed at the local endpoints.
func FunctionEnv(tmpl *samtemplate.Template, logicalID string, ep Endpoints) (map[string]string, error) {
	env, err := tmpl.FunctionEnv(logicalID, map[string]string{TableLogicalID: LocalTableName, "EventBus": LocalBusName(tmpl)})
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": ep.DynamoDB, "AWS_ENDPOINT_URL_EVENTBRIDGE": ep.EventBridge, "AWS_ENDPOINT_URL_ECR": ep.ECR,
		"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
	} {
		if v != "" {
			env[k] = v
		}
	}
	return env, nil
}

func LocalBusName(tmpl *samtemplate.Template) string {
	p, err := tmpl.ResourceProperties("EventBus", nil)
	if err != nil {
		return ""
	}
	name, _ := p["Name"].(string)
	return name
}

// Start runs the local cloud. Close stops it and saves the table.
func Start(opts Options) (*Stack, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	for _, a := range []*string{&opts.EventsAddr, &opts.RegistryAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	s := &Stack{log: slog.New(slog.NewJSONHandler(opts.Log, nil)).With("service", "local-cloud"), backoff: opts.Backoff}
	var err error
	if s.Key, err = LoadOrCreateKey(opts.StateDir); err != nil {
		return nil, err
	}
	// Bind every port first: a taken port fails before anything starts.
	var ls []net.Listener
	for _, addr := range []string{opts.APIAddr, opts.DynamoAddr, opts.EventsAddr, opts.RegistryAddr} {
		l, err := Listen(addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	apiL, dynL, evL, regL := ls[0], ls[1], ls[2], ls[3]
	ep := Endpoints{DynamoDB: "http://" + dynL.Addr().String(), EventBridge: "http://" + evL.Addr().String(), ECR: "http://" + regL.Addr().String()}
	s.APIURL, s.EventsURL, s.RegistryURL = "http://"+apiL.Addr().String(), ep.EventBridge, ep.ECR
	fail := func(err error) (*Stack, error) {
		for _, l := range ls {
			l.Close()
		}
		s.shutdown()
		return nil, err
	}
	// Artifacts name the registry that really answers, so the verifier's
	// registry reads reach it whatever port it got.
	tmpl, err := LoadTemplate(opts.RepoRoot, opts.StateDir, regL.Addr().String())
	if err != nil {
		return fail(fmt.Errorf("cloud.Start: %w", err))
	}
	s.Template, s.BusName = tmpl, LocalBusName(tmpl)

	// The registry and its ECR API.
	// Its images are kept in the state folder like the table.
	if s.Registry, err = registry.Open(registry.Options{OnPush: s.onPush, StateDir: filepath.Join(opts.StateDir, "registry")}); err != nil {
		return fail(fmt.Errorf("cloud.Start: %w", err))
	}
	s.serve(regL, s.Registry)

	// The event bus with the template's rules, targets in-process.
	rules, err := s.rules(tmpl, ep, opts.Log)
	if err != nil {
		return fail(err)
	}
	backoff := func(attempt int) time.Duration { return time.Duration(200<<min(attempt, 5)) * time.Millisecond }
	if opts.Backoff != nil {
		backoff = opts.Backoff
	}
	s.Bus = bus.New(bus.Options{Rules: rules, Buses: []string{s.BusName}, DeadLetterDir: filepath.Join(opts.StateDir, "dead-letters"),
		Logger: s.log, Backoff: backoff})
	s.serve(evL, s.Bus)

	// DynamoDB, with the stream feeding the template's stream consumers.
	wrap, err := s.stream(tmpl, ep, opts)
	if err != nil {
		return fail(err)
	}
	if s.Dynamo, err = ServeDynamo(dynL, tmpl, LocalTableName, filepath.Join(opts.StateDir, StateFileName), wrap); err != nil {
		return fail(err)
	}

	// The API.
	handlers := map[string]LambdaHandler{}
	for _, r := range tmpl.Routes() {
		h, err := s.function(tmpl, r.LogicalID, ep, opts.Log)
		if err != nil {
			return fail(err)
		}
		handlers[r.LogicalID] = h
	}
	gw, err := NewGateway(tmpl, handlers, func(a *samtemplate.Authorizer) *Authorizer {
		return &Authorizer{Key: &s.Key.PublicKey, Issuer: a.Issuer, Audiences: a.Audience}
	}, s.log)
	if err != nil {
		return fail(err)
	}
	s.api = &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go s.api.Serve(apiL)
	return s, nil
}

// onPush emits ECR's push event on the default bus, as ECR does, for every
// manifest pushed by tag to the local registry.
func (s *Stack) onPush(p registry.PushEvent) {
	if s.Bus == nil {
		return
	}
	detail, _ := json.Marshal(map[string]string{
		"result": "SUCCESS", "repository-name": p.Repository, "image-digest": p.Digest, "action-type": "PUSH",
		"image-tag": p.Tag, "manifest-media-type": p.MediaType, "artifact-media-type": p.ArtifactMediaType,
	})
	s.Bus.Put(context.Background(), []bus.Entry{{
		Source: "aws.ecr", DetailType: "ECR Image Action", Detail: string(detail), EventBusName: bus.DefaultBus,
		Resources: []string{"arn:aws:ecr:us-east-1:000000000000:repository/" + p.Repository}, Time: p.Time,
	}})
}

func (s *Stack) serve(l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go srv.Serve(l)
}

// awsConfig is a function's SDK configuration from its environment, as
// app.Load builds it on Lambda.
func (s *Stack) awsConfig(env map[string]string) (aws.Config, error) {
	_, cfg, err := app.Load(func(k string) string { return env[k] })
	if err != nil {
		return aws.Config{}, err
	}
	if s.backoff != nil {
		cfg.Retryer = func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) { return s.backoff(attempt), nil })
			})
		}
	}
	return cfg, nil
}

func (s *Stack) config(tmpl *samtemplate.Template, logicalID string, ep Endpoints) (*app.Config, aws.Config, error) {
	env, err := FunctionEnv(tmpl, logicalID, ep)
	if err != nil {
		return nil, aws.Config{}, err
	}
	cfg, err := app.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		return nil, aws.Config{}, fmt.Errorf("cloud: %s: %w", logicalID, err)
	}
	awsCfg, err := s.awsConfig(env)
	return cfg, awsCfg, err
}

// rules turns the template's EventBridgeRule events into bus rules whose
// targets run the functions in-process.
func (s *Stack) rules(tmpl *samtemplate.Template, ep Endpoints, logw io.Writer) ([]bus.Rule, error) {
	var rules []bus.Rule
	for _, id := range tmpl.FunctionIDs() {
		evs, err := tmpl.FunctionEvents(id, map[string]string{"EventBus": s.BusName})
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ev.Type != "EventBridgeRule" {
				continue
			}
			raw, _ := json.Marshal(ev.Properties["Pattern"])
			pat, err := bus.ParsePattern(raw)
			if err != nil {
				return nil, fmt.Errorf("cloud: %s.%s: %w", id, ev.Name, err)
			}
			target, err := s.eventTarget(tmpl, id, ep)
			if err != nil {
				return nil, err
			}
			attempts := 3
			if rp, ok := ev.Properties["RetryPolicy"].(map[string]any); ok {
				if n, ok := rp["MaximumRetryAttempts"].(float64); ok {
					attempts = int(n) + 1
				}
			}
			busName, _ := ev.Properties["EventBusName"].(string)
			rules = append(rules, bus.Rule{Name: id + "." + ev.Name, EventBusName: busName, Pattern: pat,
				Targets: map[string]bus.Target{id: target}, MaxAttempts: attempts})
		}
	}
	return rules, nil
}

// eventTarget builds the in-process handler of an EventBridge-triggered function.
func (s *Stack) eventTarget(tmpl *samtemplate.Template, logicalID string, ep Endpoints) (bus.Target, error) {
	cfg, awsCfg, err := s.config(tmpl, logicalID, ep)
	if err != nil {
		return nil, err
	}
	switch logicalID {
	case "VerifierFunction":
		v, err := workers.NewVerifier(cfg, awsCfg)
		if err != nil {
			return nil, err
		}
		return v.Handle, nil
	case "RegistrarFunction":
		g, err := workers.NewRegistrar(cfg, awsCfg)
		if err != nil {
			return nil, err
		}
		// Lambda hands the function the event in its own type.
		return func(ctx context.Context, ev events.EventBridgeEvent) error {
			raw, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			var push events.ECRImageActionEvent
			if err := json.Unmarshal(raw, &push); err != nil {
				return err
			}
			return g.Handle(ctx, push)
		}, nil
	}
	return nil, fmt.Errorf("cloud: no local wiring for event-triggered function %s", logicalID)
}

// stream reads the template's DynamoDB event source (the publisher's) and
// returns the handler wrapper that emulates the table's stream.
func (s *Stack) stream(tmpl *samtemplate.Template, ep Endpoints, opts Options) (func(http.Handler) http.Handler, error) {
	for _, id := range tmpl.FunctionIDs() {
		evs, err := tmpl.FunctionEvents(id, nil)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ev.Type != "DynamoDB" {
				continue
			}
			if id != "PublisherFunction" {
				return nil, fmt.Errorf("cloud: no local wiring for stream consumer %s", id)
			}
			cfg, awsCfg, err := s.config(tmpl, id, ep)
			if err != nil {
				return nil, err
			}
			pub, err := workers.NewPublisher(cfg, awsCfg)
			if err != nil {
				return nil, err
			}
			so := StreamOptions{TableName: LocalTableName, Consumer: pub.Handle, BatchSize: 100, MaxRetries: 10,
				Backoff: backoffOr(s.backoff, 200*time.Millisecond), DeadLetterDir: filepath.Join(opts.StateDir, "dead-letters"), Log: s.log}
			if n, ok := ev.Properties["BatchSize"].(float64); ok {
				so.BatchSize = int(n)
			}
			if n, ok := ev.Properties["MaximumRetryAttempts"].(float64); ok {
				so.MaxRetries = int(n)
			}
			if fc, ok := ev.Properties["FilterCriteria"].(map[string]any); ok {
				var pats []*bus.Pattern
				for _, f := range fc["Filters"].([]any) {
					raw, _ := f.(map[string]any)["Pattern"].(string)
					p, err := bus.ParsePattern([]byte(raw))
					if err != nil {
						return nil, fmt.Errorf("cloud: %s filter: %w", id, err)
					}
					pats = append(pats, p)
				}
				so.Filter = func(rec []byte) bool {
					for _, p := range pats {
						if p.Matches(rec) {
							return true
						}
					}
					return len(pats) == 0
				}
			}
			return func(next http.Handler) http.Handler {
				s.Stream = NewStream(next, so)
				return s.Stream
			}, nil
		}
	}
	return nil, nil
}

// function builds a route's handler in-process from its template environment.
func (s *Stack) function(tmpl *samtemplate.Template, logicalID string, ep Endpoints, logw io.Writer) (LambdaHandler, error) {
	rt, ok := httpapi.RouteByLogicalID(logicalID)
	if !ok {
		return nil, fmt.Errorf("cloud: template function %s has no route in shared/httpapi", logicalID)
	}
	cfg, awsCfg, err := s.config(tmpl, logicalID, ep)
	if err != nil {
		return nil, err
	}
	var opts []app.Option
	if rt.NeedsRegistry {
		opts = append(opts, app.WithRepositories(ecr.FromConfig))
	}
	h, err := app.NewHandler(rt.Name, cfg, awsCfg, logw, opts...)
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

// Drain waits until the stream and the bus have handled what was written so far.
func (s *Stack) Drain(ctx context.Context) error {
	for i := 0; i < 3; i++ { // a delivery can write (a verdict), which streams and publishes again
		if s.Stream != nil {
			if err := s.Stream.Drain(ctx); err != nil {
				return err
			}
		}
		if err := s.Bus.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops taking requests, lets what is in flight through the stream
// and the bus settle (briefly), stops them, saves the table and stops
// DynamoDB. A server that does not stop in time is closed hard: this is a
// local stand-in, and the table is what must survive.
func (s *Stack) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if s.api != nil {
		stopServer(ctx, s.api)
	}
	settle, cancelSettle := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.Drain(settle)
	cancelSettle()
	s.shutdown()
	for _, srv := range s.servers {
		stopServer(ctx, srv)
	}
	var errs []error
	if s.Dynamo != nil {
		errs = append(errs, s.Dynamo.Save(), s.Dynamo.Close())
	}
	if s.Registry != nil {
		errs = append(errs, s.Registry.Close())
	}
	return errors.Join(errs...)
}

func stopServer(ctx context.Context, srv *http.Server) {
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
}

func (s *Stack) shutdown() {
	if s.Stream != nil {
		s.Stream.Close()
	}
	if s.Bus != nil {
		s.Bus.Close()
	}
}

func backoffOr(f func(int) time.Duration, d time.Duration) time.Duration {
	if f != nil {
		return f(0)
	}
	return d
}

// ServeLoopback serves h on a free 127.0.0.1 port until stop is called: for
// one-off stand-ins (make invoke starts a registry or a bus this way when
// none runs).
func ServeLoopback(h http.Handler) (url string, stop func(), err error) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

// Sidecars are the stand-ins a single function may call besides DynamoDB.
type Sidecars struct {
	ECR, EventBridge string
	stops            []func()
}

// StartSidecars points at the registry and the bus of a running local cloud
// (127.0.0.1:5000 and :4010) when they answer, and otherwise serves an empty
// registry and a bus without rules on free ports, so that a function never
// reaches for AWS.
func StartSidecars(answers func(url string) bool, busName string) (*Sidecars, error) {
	sc := &Sidecars{ECR: "http://" + LocalRegistryHost, EventBridge: "http://127.0.0.1:4010"}
	if !answers(sc.ECR) {
		url, stop, err := ServeLoopback(registry.New(registry.Options{}))
		if err != nil {
			return nil, err
		}
		sc.ECR, sc.stops = url, append(sc.stops, stop)
	}
	if !answers(sc.EventBridge) {
		b := bus.New(bus.Options{Buses: []string{busName}})
		url, stop, err := ServeLoopback(b)
		if err != nil {
			sc.Stop()
			return nil, err
		}
		sc.EventBridge, sc.stops = url, append(sc.stops, stop, func() { b.Close() })
	}
	return sc, nil
}

// Stop stops what StartSidecars started.
func (sc *Sidecars) Stop() {
	for _, stop := range sc.stops {
		stop()
	}
}
