package verify

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
	"github.com/gpuaas/app-artifacts/shared/signature"
)

// Reasons for failed_verification (SPEC section 8).
const (
	DigestNotFound    = "digest_not_found"
	DigestMismatch    = "digest_mismatch"
	MediaTypeMismatch = "media_type_mismatch"
	SourceNotAllowed  = "source_not_allowed"
	SignatureMissing  = "signature_missing"
	SignatureInvalid  = "signature_invalid"
)

// Registry is the verifier's one view of the platform registry: the
// artifact's manifest by digest through the ECR API (ImageManifest:
// BatchGetImage with the accepted media types; a missing image or
// repository is ecr.ErrNotFound, every other error is transient), and its
// signatures through the registry API (signature.Source: the legacy .sig
// tag, OCI 1.1 referrers, blobs). Faults are injected here in tests.
type Registry interface {
	ImageManifest(ctx context.Context, repository, digest string) ([]byte, string, error)
	signature.Source
}

// Verifier decides and records trust verdicts.
type Verifier struct {
	Store    lifecycle.Store
	Service  *lifecycle.Service
	Registry Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// trigger is what the verifier reads of the event detail (an audit row).
type trigger struct {
	AuditID       string  `json:"audit_id"`
	ProjectID     string  `json:"project_id"`
	ArtifactID    *string `json:"artifact_id"`
	CorrelationID string  `json:"correlation_id"`
	TraceID       *string `json:"trace_id"`
}

// Verdict is the outcome of checking an artifact.
type Verdict struct {
	Reason string // "" when every check passed
	KeyID  string // the trusted key that signed, when a signature was checked
}

// Handle is the Lambda entry point. It returns an error only for transient
// failures, so that EventBridge retries and finally dead-letters the event;
// a transient failure never produces a verdict.
func (v *Verifier) Handle(ctx context.Context, ev events.EventBridgeEvent) error {
	start := v.Now()
	ctx, calls := obs.WithCallCounter(ctx)
	var t trigger
	if err := json.Unmarshal(ev.Detail, &t); err != nil || t.ProjectID == "" || t.ArtifactID == nil {
		v.Logger.ErrorContext(ctx, "verification event without an artifact; dropped", "event_id", ev.ID, "detail_type", ev.DetailType)
		return nil
	}
	log := v.Logger.With("correlation_id", t.CorrelationID, "project_id", t.ProjectID, "artifact_id", *t.ArtifactID,
		"event_id", ev.ID, "trigger_audit_id", t.AuditID, "detail_type", ev.DetailType)
	outcome, reason, err := v.run(ctx, t)
	attrs := []any{"outcome", outcome, "reason", reason, "dynamodb_calls", calls.Load(),
		"latency_ms", float64(v.Now().Sub(start).Microseconds()) / 1000}
	if err != nil {
		log.ErrorContext(ctx, "verification failed transiently; the event will be retried", append(attrs, "error", err.Error())...)
		return err
	}
	log.InfoContext(ctx, "verification", attrs...)
	return nil
}

func (v *Verifier) run(ctx context.Context, t trigger) (outcome, reason string, err error) {
	a, p, err := v.Store.GetArtifact(ctx, t.ProjectID, *t.ArtifactID)
	if err != nil {
		return "error", "", err
	}
	if a == nil || a.Trust != artifact.Unverified {
		return "skipped", "", nil // nothing to do: gone, or a verdict already exists
	}
	var verdict Verdict
	decide := func(ctx context.Context, a *artifact.Artifact, p *lifecycle.Project) (artifact.Command, error) {
		policy := artifact.DefaultPolicy()
		if p != nil && p.Policy != nil {
			policy = p.Policy
		}
		var err error
		if verdict, err = v.Check(ctx, a, policy); err != nil {
			return artifact.Command{}, err
		}
		if verdict.Reason != "" {
			return artifact.Command{Action: artifact.ActionVerificationFail, Reason: verdict.Reason}, nil
		}
		return artifact.Command{Action: artifact.ActionVerificationPass, KeyID: verdict.KeyID}, nil
	}
	trace := ""
	if t.TraceID != nil {
		trace = *t.TraceID
	}
	req := &lifecycle.Request{
		Caller:    lifecycle.Caller{Principal: lifecycle.Verifier, OrgID: a.OrgID, CorrelationID: t.CorrelationID, TraceID: trace},
		ProjectID: a.ProjectID, IdemKey: "event:" + t.AuditID,
	}
	wrote, err := v.Service.RecordVerdict(ctx, req, a, p, decide)
	if err != nil {
		return "error", "", err
	}
	if !wrote {
		return "skipped", "", nil
	}
	if verdict.Reason != "" {
		return string(artifact.FailedVerification), verdict.Reason, nil
	}
	return string(artifact.Verified), "", nil
}

// Check runs every check of SPEC section 8 on a under policy. A transient
// registry error is returned as an error, never as a verdict.
func (v *Verifier) Check(ctx context.Context, a *artifact.Artifact, policy *artifact.Policy) (Verdict, error) {
	repo := repositoryName(a.Repository)
	if a.DigestAlgorithm != "sha256" {
		// ECR addresses manifests by sha256 only.
		return Verdict{Reason: DigestNotFound}, nil
	}
	body, mediaType, err := v.Registry.ImageManifest(ctx, repo, a.Digest)
	if errors.Is(err, ecr.ErrNotFound) {
		return Verdict{Reason: DigestNotFound}, nil
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("verify: read manifest: %w", err)
	}
	if digestOf(a.DigestAlgorithm, body) != a.Digest {
		return Verdict{Reason: DigestMismatch}, nil
	}
	if mediaType != a.MediaType {
		return Verdict{Reason: MediaTypeMismatch}, nil
	}
	if !sourceAllowed(a, repo, policy) {
		return Verdict{Reason: SourceNotAllowed}, nil
	}
	wanted := policy.SignatureRequired || slices.ContainsFunc(policy.Channels, func(c artifact.Channel) bool { return c.SignatureRequired })
	if !wanted || len(policy.TrustedKeys) == 0 {
		return Verdict{}, nil
	}
	keys := make([]signature.Key, 0, len(policy.TrustedKeys))
	for _, k := range policy.TrustedKeys {
		pub, err := artifact.ParsePublicKeyPEM(k.PEM)
		if err != nil {
			continue // validated on PUT; a key that stopped parsing trusts nothing
		}
		keys = append(keys, signature.Key{KeyID: k.KeyID, Public: pub})
	}
	keyID, err := signature.Verify(ctx, v.Registry, repo, a.Digest, keys)
	switch {
	case err == nil:
		return Verdict{KeyID: keyID}, nil
	case errors.Is(err, signature.ErrMissing):
		if !policy.SignatureRequired {
			// Only some channels ask for signatures: the artifact verifies,
			// unsigned, and those channels refuse it at promotion.
			return Verdict{}, nil
		}
		return Verdict{Reason: SignatureMissing}, nil
	case errors.Is(err, signature.ErrInvalid):
		// A signature that is there and does not hold (another key, another
		// digest, a tampered payload) fails verification whichever part of
		// the policy asked for signatures: it is evidence of tampering, not
		// an absence.
		return Verdict{Reason: SignatureInvalid}, nil
	}
	return Verdict{}, fmt.Errorf("verify: read signatures: %w", err)
}

// repositoryName drops the registry host from host/name.
func repositoryName(repository string) string {
	_, name, ok := strings.Cut(repository, "/")
	if !ok {
		return repository
	}
	return name
}

func digestOf(algorithm string, body []byte) string {
	var h hash.Hash = sha256.New()
	if algorithm == "sha512" {
		h = sha512.New()
	}
	h.Write(body)
	return algorithm + ":" + hex.EncodeToString(h.Sum(nil))
}

// sourceAllowed applies the allowlist: the policy must accept the source
// type, platform pushes must sit in the project's own repository and
// pull-through artifacts under an allowed prefix.
func sourceAllowed(a *artifact.Artifact, repo string, p *artifact.Policy) bool {
	if !p.AllowsSource(a.SourceType) {
		return false
	}
	switch a.SourceType {
	case artifact.SourcePlatformPush:
		return repo == artifact.RepositoryName(a.OrgID, a.ProjectID, a.AppSlug)
	case artifact.SourcePullThroughCache:
		for _, pre := range p.PullThroughPrefixes {
			if strings.HasPrefix(repo, pre) {
				return true
			}
		}
	}
	return false
}
