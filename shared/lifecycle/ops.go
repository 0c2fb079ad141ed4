package lifecycle

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// IntentInput is the body of POST .../publish-intents.
type IntentInput struct {
	AppSlug    *string `json:"app_slug"`
	AppVersion *string `json:"app_version"`
	Kind       *string `json:"artifact_kind"`
	SourceType *string `json:"source_type"`
}

// RegisterInput is the body of POST .../app-artifacts.
type RegisterInput struct {
	AppSlug         *string `json:"app_slug"`
	AppVersion      *string `json:"app_version"`
	Repository      *string `json:"repository"`
	Digest          *string `json:"digest"`
	DigestAlgorithm *string `json:"digest_algorithm"`
	Kind            *string `json:"artifact_kind"`
	SourceType      *string `json:"source_type"`
	MediaType       *string `json:"media_type"`
	PublishIntentID *string `json:"publish_intent_id"`
}

// PromoteInput is the body of POST .../promote.
type PromoteInput struct {
	Channel *string `json:"channel"`
}

// ReasonInput is the body of deprecate, retire and revoke.
type ReasonInput struct {
	Reason *string `json:"reason"`
}

func required(field string, v *string) (string, error) {
	if v == nil {
		return "", artifact.Invalid("missing_field", field, field+" is required")
	}
	return *v, nil
}

type fieldCheck struct {
	name string
	v    *string
	ok   func(string) bool
	msg  string
}

func checkFields(fs []fieldCheck) error {
	for _, f := range fs {
		v, err := required(f.name, f.v)
		if err != nil {
			return err
		}
		if !f.ok(v) {
			return artifact.Invalid(artifact.ReasonInvalidField, f.name, f.msg)
		}
	}
	return nil
}

func commonFields(slug, version, kind, source *string) []fieldCheck {
	return []fieldCheck{
		{"app_slug", slug, artifact.ValidSlug, "app_slug must match ^[a-z][a-z0-9-]{1,62}$ and not end with a hyphen"},
		{"app_version", version, artifact.ValidVersion, "app_version must be an OCI tag: ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"},
		{"artifact_kind", kind, func(s string) bool { return artifact.ValidKind(artifact.Kind(s)) }, "artifact_kind must be container_image, helm_chart or oci_artifact"},
		{"source_type", source, func(s string) bool { return artifact.ValidSourceType(artifact.SourceType(s)) }, "source_type must be platform_push or pull_through_cache"},
	}
}

// CreateIntent reserves the platform repository for an app version.
func (s *Service) CreateIntent(ctx context.Context, r *Request, in *IntentInput) (*Result, error) {
	if !r.Can(artifact.PermPublish) {
		return nil, forbidden(artifact.PermPublish)
	}
	if err := checkFields(commonFields(in.AppSlug, in.AppVersion, in.Kind, in.SourceType)); err != nil {
		return nil, err
	}
	now := s.now()
	name := artifact.RepositoryName(r.OrgID, r.ProjectID, *in.AppSlug)
	intent := &artifact.PublishIntent{
		IntentID: s.NewID("pi"), OrgID: r.OrgID, ProjectID: r.ProjectID,
		AppSlug: *in.AppSlug, AppVersion: *in.AppVersion,
		Kind: artifact.Kind(*in.Kind), SourceType: artifact.SourceType(*in.SourceType),
		RepositoryName: name, Repository: s.RegistryHost + "/" + name, Tag: *in.AppVersion,
		Status: artifact.IntentOpen, CreatedBy: r.Principal, CreatedAt: now, ExpiresAt: now.Add(artifact.IntentTTL),
	}
	body, err := jsonBody(intent)
	if err != nil {
		return nil, err
	}
	// Nothing reaches the registry for a request that would not commit: a
	// replay answers from its record (even while the registry is down), a
	// reused key or a project of another org is refused, and only then is
	// the repository made. The transaction below still guards all three
	// against a concurrent writer.
	p, rec, err := s.Store.LoadProject(ctx, r.ProjectID, new(s.scope(r)))
	if err != nil {
		return nil, err
	}
	if rec != nil {
		return replay(r, rec)
	}
	if p != nil && p.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	if s.Repositories != nil {
		// The repository must exist before anyone is told to push to it.
		if err := s.Repositories.EnsureRepository(ctx, name); err != nil {
			e := artifact.Errorf(artifact.CodeUpstream, "registry_unavailable",
				"the platform registry could not prepare the repository; retry with the same idempotency key")
			e.Err = err
			return nil, e
		}
	}
	m := &Mutation{
		Idem: s.record(r, now, http.StatusCreated, body, ""), Now: now,
		ClaimProject: &Project{ProjectID: r.ProjectID, OrgID: r.OrgID},
		NewIntent:    intent,
		Audit: s.audit(r, now, "app_artifact.publish_intent", "", nil, nil, map[string]any{
			"intent_id": intent.IntentID, "app_slug": intent.AppSlug, "app_version": intent.AppVersion,
			"repository": intent.Repository, "artifact_kind": string(intent.Kind), "source_type": string(intent.SourceType),
		}),
	}
	return s.commit(ctx, r, m, true)
}

// Register records an artifact by digest. One transaction: the idempotency
// record, the project claim, the uniqueness guards, the artifact, the
// intent's fulfilment and the audit row.
func (s *Service) Register(ctx context.Context, r *Request, in *RegisterInput) (*Result, error) {
	if !r.Can(artifact.PermPublish) {
		return nil, forbidden(artifact.PermPublish)
	}
	fs := commonFields(in.AppSlug, in.AppVersion, in.Kind, in.SourceType)
	fs = append(fs,
		fieldCheck{"repository", in.Repository, func(string) bool { return true }, ""},
		fieldCheck{"digest", in.Digest, func(string) bool { return true }, ""},
		fieldCheck{"digest_algorithm", in.DigestAlgorithm, func(string) bool { return true }, ""},
		fieldCheck{"media_type", in.MediaType, artifact.ValidMediaType, "media_type must be an OCI or Docker manifest or index media type"},
	)
	if err := checkFields(fs); err != nil {
		return nil, err
	}
	if err := artifact.CheckDigest(*in.Digest, *in.DigestAlgorithm); err != nil {
		return nil, err
	}
	source := artifact.SourceType(*in.SourceType)
	if err := s.checkRepository(r, source, *in.AppSlug, *in.Repository); err != nil {
		return nil, err
	}
	if in.PublishIntentID != nil && !artifact.ValidArtifactID(*in.PublishIntentID) {
		return nil, artifact.Invalid(artifact.ReasonInvalidField, "publish_intent_id", "publish_intent_id is not an id this service issued")
	}
	now := s.now()
	a := &artifact.Artifact{
		ArtifactID: s.NewID("art"), OrgID: r.OrgID, ProjectID: r.ProjectID,
		AppSlug: *in.AppSlug, AppVersion: *in.AppVersion, Repository: *in.Repository,
		Digest: *in.Digest, DigestAlgorithm: *in.DigestAlgorithm,
		Kind: artifact.Kind(*in.Kind), SourceType: source, MediaType: *in.MediaType,
		Lifecycle: artifact.Published, Trust: artifact.Unverified, Channels: []string{},
		PublishIntentID: in.PublishIntentID, CreatedBy: r.Principal, CreatedAt: now, UpdatedAt: now, Revision: 1,
	}
	body, err := jsonBody(a)
	if err != nil {
		return nil, err
	}
	m := &Mutation{
		Idem: s.record(r, now, http.StatusCreated, body, a.ArtifactID), Now: now,
		ClaimProject: &Project{ProjectID: r.ProjectID, OrgID: r.OrgID},
		NewArtifact:  a, FulfilIntent: in.PublishIntentID,
		Audit: s.audit(r, now, "app_artifact.register", a.ArtifactID, nil, a.Snapshot(), map[string]any{
			"app_slug": a.AppSlug, "app_version": a.AppVersion, "repository": a.Repository, "digest": a.Digest,
			"artifact_kind": string(a.Kind), "source_type": string(a.SourceType), "media_type": a.MediaType,
			"publish_intent_id": in.PublishIntentID, "via": "api",
		}),
	}
	res, err := s.commit(ctx, r, m, true)
	if ie, ok := errors.AsType[*IntentError](err); ok {
		return nil, intentError(ie, a)
	}
	return res, err
}

func intentError(ie *IntentError, a *artifact.Artifact) error {
	p := ie.Intent
	if p == nil {
		return artifact.Invalid("unknown_publish_intent", "publish_intent_id", "no such publish intent in this project")
	}
	if p.AppSlug != a.AppSlug || p.AppVersion != a.AppVersion || p.Kind != a.Kind || p.SourceType != a.SourceType {
		return artifact.Invalid("publish_intent_mismatch", "publish_intent_id",
			"the publish intent was issued for another app_slug, app_version, artifact_kind or source_type")
	}
	status := p.Status
	if status == artifact.IntentOpen {
		status = artifact.IntentExpired
	}
	return artifact.Errorf(artifact.CodeStateInvalid, "publish_intent_not_open",
		"the publish intent is "+string(status)+"; request a new one", "intent_id", p.IntentID, "intent_status", string(status))
}

// checkRepository enforces where an artifact may live: platform pushes in the
// project's own repository for the app, pull-through artifacts on the
// platform registry outside the platform's project namespace.
func (s *Service) checkRepository(r *Request, source artifact.SourceType, slug, repo string) error {
	host, name, ok := strings.Cut(repo, "/")
	if !ok || host != s.RegistryHost || !artifact.ValidRepositoryName(name) {
		return artifact.Invalid(artifact.ReasonInvalidField, "repository",
			"repository must be "+s.RegistryHost+"/<repository name> on the platform registry")
	}
	switch source {
	case artifact.SourcePlatformPush:
		if want := artifact.RepositoryName(r.OrgID, r.ProjectID, slug); name != want {
			return artifact.Errorf(artifact.CodeInvalidRequest, artifact.ReasonRepositoryNamespace,
				"a platform_push artifact lives in the project's own repository for its app",
				"field", "repository", "expected_repository", s.RegistryHost+"/"+want)
		}
	case artifact.SourcePullThroughCache:
		if strings.HasPrefix(name, "gpuaas/") {
			return artifact.Errorf(artifact.CodeInvalidRequest, artifact.ReasonRepositoryNamespace,
				"a pull_through_cache artifact cannot live in the platform's project namespace", "field", "repository")
		}
		if ns := s.pullThrough() + "/"; !strings.HasPrefix(name, ns) {
			return artifact.Errorf(artifact.CodeInvalidRequest, artifact.ReasonRepositoryNamespace,
				"a pull_through_cache artifact lives in the platform's pull-through cache namespace "+ns, "field", "repository",
				"expected_prefix", s.RegistryHost+"/"+ns)
		}
	}
	return nil
}

var actionPerm = map[artifact.Action]artifact.Permission{
	artifact.ActionPromote:       artifact.PermPromote,
	artifact.ActionDeprecate:     artifact.PermDeprecate,
	artifact.ActionRetire:        artifact.PermRetire,
	artifact.ActionRevoke:        artifact.PermTrust,
	artifact.ActionRequestVerify: artifact.PermTrust,
}

// Transition applies a requested lifecycle or trust action: one consistent
// read of the artifact, project and idempotency record, a decision in pure
// code, one transaction guarded by the revision read.
func (s *Service) Transition(ctx context.Context, r *Request, artifactID string, cmd artifact.Command) (*Result, error) {
	perm, ok := actionPerm[cmd.Action]
	if !ok {
		return nil, artifact.Internal(errors.New("lifecycle.Transition: not a requestable action " + string(cmd.Action)))
	}
	if !r.Can(perm) {
		return nil, forbidden(perm)
	}
	if !artifact.ValidArtifactID(artifactID) {
		return nil, notFound()
	}
	scope := s.scope(r)
	for attempt := 0; ; attempt++ {
		v, err := s.Store.LoadForMutation(ctx, r.ProjectID, artifactID, scope)
		if err != nil {
			return nil, err
		}
		now := s.now()
		if v.Idem != nil && now.Before(v.Idem.ExpiresAt) {
			return replay(r, v.Idem)
		}
		if v.Project != nil && v.Project.OrgID != r.OrgID {
			return nil, orgMismatch()
		}
		if v.Artifact == nil {
			return nil, notFound()
		}
		policy := artifact.DefaultPolicy()
		if v.Project != nil && v.Project.Policy != nil {
			policy = v.Project.Policy
		}
		if cmd.Action == artifact.ActionPromote {
			if ch, ok := policy.Channel(cmd.Channel); ok && ch.Protected && !r.Can(artifact.PermPromoteProtected) {
				return nil, artifact.Forbidden("protected_channel", "only project admins may promote into a protected channel",
					"channel", ch.Name, "roles_granting", artifact.RolesGranting(artifact.PermPromoteProtected))
			}
		}
		next, changed, err := artifact.Apply(v.Artifact, cmd, policy, now)
		if err != nil {
			return nil, err
		}
		body, err := jsonBody(next)
		if err != nil {
			return nil, err
		}
		status := http.StatusOK
		if cmd.Action == artifact.ActionRequestVerify {
			status = http.StatusAccepted // verification runs asynchronously
		}
		m := &Mutation{Idem: s.record(r, now, status, body, artifactID), Now: now, ExpectRevision: v.Artifact.Revision}
		if changed {
			m.UpdateArtifact = next
			details := map[string]any{}
			if cmd.Channel != "" {
				details["channel"] = cmd.Channel
			}
			if cmd.Reason != "" {
				details["reason"] = cmd.Reason
			}
			m.Audit = s.audit(r, now, cmd.Action.AuditAction(), artifactID, v.Artifact.Snapshot(), next.Snapshot(), details)
		} else {
			m.CheckArtifact = v.Artifact
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

// Get reads one artifact of the project.
func (s *Service) Get(ctx context.Context, r *Request, artifactID string) (*Result, error) {
	if !r.Can(artifact.PermRead) {
		return nil, forbidden(artifact.PermRead)
	}
	if !artifact.ValidArtifactID(artifactID) {
		return nil, notFound()
	}
	a, p, err := s.Store.GetArtifact(ctx, r.ProjectID, artifactID)
	if err != nil {
		return nil, err
	}
	if p != nil && p.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	if a == nil {
		return nil, notFound()
	}
	body, err := jsonBody(a)
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusOK, Body: body, ArtifactID: a.ArtifactID}, nil
}

// Verifier is the principal the asynchronous verifier acts as.
var Verifier = artifact.Principal{PrincipalID: "gpuaas-verifier", PrincipalType: artifact.PrincipalServiceAccount}

// Decide is the verifier's check of an artifact read unverified, under its
// project's policy (p may be nil: the defaults apply). A transient
// dependency failure is an error, never a verdict.
type Decide func(ctx context.Context, a *artifact.Artifact, p *Project) (artifact.Command, error)

// RecordVerdict sets the verifier's verdict on a, which was read unverified
// with its project p: one transaction guarded by the revision read, with an
// app_artifact.verify audit row. If the artifact moved meanwhile it is read
// again and, while still unverified, decided again from scratch: a verdict
// is only ever written on the revision it was decided for, so a late event
// cannot carry an old verdict across a re-verification. Duplicate or late
// events give one verdict. It reports whether this call wrote one.
func (s *Service) RecordVerdict(ctx context.Context, r *Request, a *artifact.Artifact, p *Project, decide Decide) (bool, error) {
	for attempt := 0; ; attempt++ {
		if a == nil || a.Trust != artifact.Unverified {
			return false, nil
		}
		cmd, err := decide(ctx, a, p)
		if err != nil {
			return false, err
		}
		now := s.now()
		next, _, err := artifact.Apply(a, cmd, nil, now)
		if err != nil {
			return false, err
		}
		details := map[string]any{"verdict": string(next.Trust)}
		if cmd.Reason != "" {
			details["reason"] = cmd.Reason
		}
		if cmd.KeyID != "" {
			details["signature_key_id"] = cmd.KeyID
		}
		m := &Mutation{Now: now, UpdateArtifact: next, ExpectRevision: a.Revision,
			Audit: s.audit(r, now, cmd.Action.AuditAction(), a.ArtifactID, a.Snapshot(), next.Snapshot(), details)}
		err = s.Store.Commit(ctx, m)
		if !errors.Is(err, ErrRevisionChanged) {
			return err == nil, err
		}
		if attempt+1 >= s.maxAttempts() {
			return false, err
		}
		s.sleep(ctx, attempt)
		if a, p, err = s.Store.GetArtifact(ctx, a.ProjectID, a.ArtifactID); err != nil {
			return false, err
		}
	}
}
