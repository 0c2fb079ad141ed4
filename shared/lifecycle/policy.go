package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// ChannelInput is one channel of a policy PUT.
type ChannelInput struct {
	Name              *string  `json:"name"`
	Protected         *bool    `json:"protected"`
	RequiredTrust     []string `json:"required_trust"`
	SignatureRequired *bool    `json:"signature_required"`
}

// KeyInput is one trusted key of a policy PUT.
type KeyInput struct {
	KeyID *string `json:"key_id"`
	PEM   *string `json:"pem"`
}

// PolicyInput is the body of PUT .../app-artifact-policy: the whole policy.
type PolicyInput struct {
	Channels            []ChannelInput `json:"channels"`
	SignatureRequired   *bool          `json:"signature_required"`
	TrustedKeys         []KeyInput     `json:"trusted_keys"`
	AllowedSourceTypes  []string       `json:"allowed_source_types"`
	PullThroughPrefixes []string       `json:"pull_through_prefixes"`
}

// PolicyView is the ProjectPolicy the API answers.
type PolicyView struct {
	ProjectID string `json:"project_id"`
	*artifact.Policy
	Revision  int64               `json:"revision"`
	UpdatedAt *artifact.Timestamp `json:"updated_at"`
	UpdatedBy *artifact.Principal `json:"updated_by"`
}

const (
	maxChannels = 32
	maxKeys     = 10
	maxPrefixes = 20
)

func policyField(field, msg string) error {
	return artifact.Invalid(artifact.ReasonInvalidField, field, msg)
}

// policy validates in and returns the domain policy.
// policy validates in; pullThrough is the platform's pull-through cache
// namespace, under which every pull-through prefix must lie.
func (in *PolicyInput) policy(pullThrough string) (*artifact.Policy, error) {
	if in.Channels == nil {
		return nil, artifact.Invalid("missing_field", "channels", "channels is required")
	}
	if in.SignatureRequired == nil {
		return nil, artifact.Invalid("missing_field", "signature_required", "signature_required is required")
	}
	if in.TrustedKeys == nil {
		return nil, artifact.Invalid("missing_field", "trusted_keys", "trusted_keys is required (it may be empty)")
	}
	if in.AllowedSourceTypes == nil {
		return nil, artifact.Invalid("missing_field", "allowed_source_types", "allowed_source_types is required")
	}
	if in.PullThroughPrefixes == nil {
		return nil, artifact.Invalid("missing_field", "pull_through_prefixes", "pull_through_prefixes is required (it may be empty)")
	}
	p := &artifact.Policy{SignatureRequired: *in.SignatureRequired, TrustedKeys: []artifact.TrustedKey{}, PullThroughPrefixes: []string{}}
	if len(in.Channels) == 0 || len(in.Channels) > maxChannels {
		return nil, policyField("channels", "a policy has 1 to 32 channels")
	}
	signing := p.SignatureRequired
	for i, c := range in.Channels {
		f := fmt.Sprintf("channels[%d]", i)
		if c.Name == nil || !artifact.ValidChannelName(*c.Name) {
			return nil, policyField(f+".name", "channel names match ^[a-z][a-z0-9-]{0,31}$")
		}
		if _, dup := p.Channel(*c.Name); dup {
			return nil, policyField(f+".name", "channel "+*c.Name+" is defined twice")
		}
		if c.Protected == nil || c.SignatureRequired == nil {
			return nil, artifact.Invalid("missing_field", f, "each channel sets name, protected, required_trust and signature_required")
		}
		ch := artifact.Channel{Name: *c.Name, Protected: *c.Protected, SignatureRequired: *c.SignatureRequired}
		for _, t := range c.RequiredTrust {
			ts := artifact.TrustState(t)
			// Quarantined states are never promotable: a policy cannot admit them.
			if (ts != artifact.Unverified && ts != artifact.Verified) || slices.Contains(ch.RequiredTrust, ts) {
				return nil, policyField(f+".required_trust", "required_trust lists unverified and/or verified, once each")
			}
			ch.RequiredTrust = append(ch.RequiredTrust, ts)
		}
		if len(ch.RequiredTrust) == 0 {
			return nil, policyField(f+".required_trust", "required_trust names at least one trust state")
		}
		signing = signing || ch.SignatureRequired
		p.Channels = append(p.Channels, ch)
	}
	if len(in.TrustedKeys) > maxKeys {
		return nil, policyField("trusted_keys", "at most 10 trusted keys")
	}
	for i, k := range in.TrustedKeys {
		f := fmt.Sprintf("trusted_keys[%d]", i)
		if k.KeyID == nil || !artifact.ValidToken(*k.KeyID, 1, 64) {
			return nil, policyField(f+".key_id", "key_id is 1 to 64 characters of [A-Za-z0-9._:-]")
		}
		for _, seen := range p.TrustedKeys {
			if seen.KeyID == *k.KeyID {
				return nil, policyField(f+".key_id", "key_id "+*k.KeyID+" is listed twice")
			}
		}
		if k.PEM == nil {
			return nil, artifact.Invalid("missing_field", f+".pem", "pem is required")
		}
		if _, err := artifact.ParsePublicKeyPEM(*k.PEM); err != nil {
			return nil, policyField(f+".pem", "pem must be one ECDSA P-256 public key (PEM \"PUBLIC KEY\")")
		}
		p.TrustedKeys = append(p.TrustedKeys, artifact.TrustedKey{KeyID: *k.KeyID, PEM: strings.TrimSpace(*k.PEM) + "\n"})
	}
	if signing && len(p.TrustedKeys) == 0 {
		return nil, artifact.Invalid("trusted_keys_required", "trusted_keys", "a policy that requires signatures must trust at least one key")
	}
	for _, s := range in.AllowedSourceTypes {
		st := artifact.SourceType(s)
		if !artifact.ValidSourceType(st) || slices.Contains(p.AllowedSourceTypes, st) {
			return nil, policyField("allowed_source_types", "allowed_source_types lists platform_push and/or pull_through_cache, once each")
		}
		p.AllowedSourceTypes = append(p.AllowedSourceTypes, st)
	}
	if len(p.AllowedSourceTypes) == 0 {
		return nil, policyField("allowed_source_types", "allowed_source_types names at least one source type")
	}
	if len(in.PullThroughPrefixes) > maxPrefixes {
		return nil, policyField("pull_through_prefixes", "at most 20 pull-through prefixes")
	}
	for i, pre := range in.PullThroughPrefixes {
		name := strings.TrimSuffix(pre, "/")
		if !artifact.ValidRepositoryName(name) || strings.HasPrefix(pre, "gpuaas/") || slices.Contains(p.PullThroughPrefixes, pre) {
			return nil, policyField(fmt.Sprintf("pull_through_prefixes[%d]", i), "a prefix is a repository path (optionally ending in /) outside gpuaas/, listed once")
		}
		if !strings.HasPrefix(pre, pullThrough+"/") {
			// The verifier may read pull-through images only there (IAM).
			return nil, policyField(fmt.Sprintf("pull_through_prefixes[%d]", i), "a prefix lies under the platform's pull-through cache namespace "+pullThrough+"/")
		}
		p.PullThroughPrefixes = append(p.PullThroughPrefixes, pre)
	}
	return p, nil
}

func (s *Service) policyView(projectID string, p *Project) *PolicyView {
	v := &PolicyView{ProjectID: projectID, Policy: artifact.DefaultPolicy()}
	if p != nil && p.Policy != nil {
		v.Policy, v.Revision, v.UpdatedAt, v.UpdatedBy = p.Policy, p.PolicyRevision, (*artifact.Timestamp)(p.PolicyUpdatedAt), p.PolicyUpdatedBy
	}
	return v
}

// GetPolicy answers the project's policy (the default one until set).
func (s *Service) GetPolicy(ctx context.Context, r *Request) (*Result, error) {
	if !r.Can(artifact.PermAudit) {
		return nil, forbidden(artifact.PermAudit)
	}
	p, _, err := s.Store.LoadProject(ctx, r.ProjectID, nil)
	if err != nil {
		return nil, err
	}
	if p != nil && p.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	body, err := jsonBody(s.policyView(r.ProjectID, p))
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusOK, Body: body}, nil
}

// PutPolicy replaces the project's policy: one read of the project and the
// idempotency record, one transaction guarded by the policy revision read.
func (s *Service) PutPolicy(ctx context.Context, r *Request, in *PolicyInput) (*Result, error) {
	if !r.Can(artifact.PermTrust) {
		return nil, forbidden(artifact.PermTrust)
	}
	pol, err := in.policy(s.pullThrough())
	if err != nil {
		return nil, err
	}
	scope := s.scope(r)
	for attempt := 0; ; attempt++ {
		p, idem, err := s.Store.LoadProject(ctx, r.ProjectID, &scope)
		if err != nil {
			return nil, err
		}
		now := s.now()
		if idem != nil && now.Before(idem.ExpiresAt) {
			return replay(r, idem)
		}
		if p != nil && p.OrgID != r.OrgID {
			return nil, orgMismatch()
		}
		before := s.policyView(r.ProjectID, p)
		by := r.Principal
		after := &PolicyView{ProjectID: r.ProjectID, Policy: pol, Revision: before.Revision + 1, UpdatedAt: (*artifact.Timestamp)(&now), UpdatedBy: &by}
		body, err := jsonBody(after)
		if err != nil {
			return nil, err
		}
		m := &Mutation{
			Idem: s.record(r, now, http.StatusOK, body, ""), Now: now,
			UpdatePolicy: &PolicyUpdate{OrgID: r.OrgID, ProjectID: r.ProjectID, Policy: pol, ExpectRevision: before.Revision,
				Revision: after.Revision, UpdatedAt: now, UpdatedBy: by},
			Audit: s.audit(r, now, "app_artifact.policy_update", "", nil, nil, map[string]any{
				"policy_revision": after.Revision, "policy_before": before.Policy, "policy_after": pol,
			}),
		}
		res, err := s.commit(ctx, r, m, false)
		if errors.Is(err, ErrRevisionChanged) {
			if attempt+1 >= s.maxAttempts() {
				return nil, concurrentUpdate()
			}
			s.sleep(ctx, attempt)
			continue
		}
		return res, err
	}
}
