package workers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecr "github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/obs"
	"github.com/gpuaas/app-artifacts/shared/ocireg"
	"github.com/gpuaas/app-artifacts/shared/publisher"
	"github.com/gpuaas/app-artifacts/shared/registrar"
	"github.com/gpuaas/app-artifacts/shared/verify"
)

// NewPublisher wires the stream-to-EventBridge relay.
func NewPublisher(cfg *app.Config, awsCfg aws.Config) (*publisher.Publisher, error) {
	if cfg.EventBusName == "" {
		return nil, errors.New("workers.NewPublisher: EVENT_BUS_NAME is not set")
	}
	eb := eventbridge.NewFromConfig(awsCfg, func(o *eventbridge.Options) {
		if cfg.EventBridgeEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.EventBridgeEndpoint)
		}
	})
	return &publisher.Publisher{API: eb, BusName: cfg.EventBusName, Logger: obs.NewLogger(os.Stdout, "publisher")}, nil
}

// NewVerifier wires the verifier: the store, ECR for manifests, the
// registry API (with an ECR token, fetched on first use) for signatures.
func NewVerifier(cfg *app.Config, awsCfg aws.Config) (*verify.Verifier, error) {
	svc, err := app.NewLifecycle(cfg, awsCfg)
	if err != nil {
		return nil, fmt.Errorf("workers.NewVerifier: %w", err)
	}
	ecrAPI := ecrClient(cfg, awsCfg)
	reg, err := ocireg.New(cfg.RegistryHost, remote.WithAuth(&ecrAuth{api: ecrAPI}))
	if err != nil {
		return nil, fmt.Errorf("workers.NewVerifier: %w", err)
	}
	return &verify.Verifier{
		Store: svc.Store, Service: svc, Registry: platformRegistry{Client: reg, images: ecr.New(ecrAPI, "")},
		Logger: obs.NewLogger(os.Stdout, "verifier"), Now: time.Now,
	}, nil
}

// platformRegistry is the verifier's Registry: ECR's API for an artifact's
// manifest, the registry API for its signatures.
type platformRegistry struct {
	*ocireg.Client // tags, referrers and blobs, for signatures
	images         *ecr.Client
}

func (r platformRegistry) ImageManifest(ctx context.Context, repository, digest string) ([]byte, string, error) {
	return r.images.ImageManifest(ctx, repository, digest)
}

var _ verify.Registry = platformRegistry{}

// NewRegistrar wires the ECR push registrar.
func NewRegistrar(cfg *app.Config, awsCfg aws.Config) (*registrar.Registrar, error) {
	svc, err := app.NewLifecycle(cfg, awsCfg)
	if err != nil {
		return nil, fmt.Errorf("workers.NewRegistrar: %w", err)
	}
	return &registrar.Registrar{Service: svc, Manifests: ecr.New(ecrClient(cfg, awsCfg), ""),
		Logger: obs.NewLogger(os.Stdout, "registrar"), Now: time.Now}, nil
}

// MustRegistrar: see MustPublisher.
func MustRegistrar() *registrar.Registrar {
	cfg, awsCfg, err := app.Load(os.Getenv)
	var g *registrar.Registrar
	if err == nil {
		g, err = NewRegistrar(cfg, awsCfg)
	}
	app.ExitOnInitError("registrar", err)
	return g
}

// ecrAuth authenticates registry API calls with an ECR authorization token,
// fetched when first needed (never at init) and renewed before it expires.
type ecrAuth struct {
	api     *awsecr.Client
	mu      sync.Mutex
	cfg     *authn.AuthConfig
	expires time.Time
}

func (a *ecrAuth) Authorization() (*authn.AuthConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg != nil && time.Until(a.expires) > 5*time.Minute {
		return a.cfg, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := a.api.GetAuthorizationToken(ctx, &awsecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, fmt.Errorf("app: ECR authorization token: %w", err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return nil, errors.New("app: ECR returned no authorization token")
	}
	raw, err := base64.StdEncoding.DecodeString(*out.AuthorizationData[0].AuthorizationToken)
	if err != nil {
		return nil, fmt.Errorf("app: ECR authorization token: %w", err)
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	a.cfg = &authn.AuthConfig{Username: user, Password: pass}
	a.expires = time.Now().Add(time.Hour)
	if e := out.AuthorizationData[0].ExpiresAt; e != nil {
		a.expires = *e
	}
	return a.cfg, nil
}

// MustPublisher and MustVerifier are what their main packages call.
func MustPublisher() *publisher.Publisher {
	cfg, awsCfg, err := app.Load(os.Getenv)
	var p *publisher.Publisher
	if err == nil {
		p, err = NewPublisher(cfg, awsCfg)
	}
	app.ExitOnInitError("publisher", err)
	return p
}

// MustVerifier: see MustPublisher.
func MustVerifier() *verify.Verifier {
	cfg, awsCfg, err := app.Load(os.Getenv)
	var v *verify.Verifier
	if err == nil {
		v, err = NewVerifier(cfg, awsCfg)
	}
	app.ExitOnInitError("verifier", err)
	return v
}

func ecrClient(cfg *app.Config, awsCfg aws.Config) *awsecr.Client {
	return awsecr.NewFromConfig(awsCfg, func(o *awsecr.Options) {
		if cfg.ECREndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.ECREndpoint)
		}
	})
}
