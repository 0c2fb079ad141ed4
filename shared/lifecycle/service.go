package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/cursor"
)

// IdemTTL is how long a first response is replayed.
const IdemTTL = 24 * time.Hour

// Caller is the authenticated principal of a request, with the permissions
// its roles grant on the route's project. Permissions hold only while the
// caller's org owns the project; the service checks that against the store.
type Caller struct {
	Principal     artifact.Principal
	OrgID         string
	Perms         map[artifact.Permission]bool
	CorrelationID string
	TraceID       string
}

// Can reports whether the caller's roles grant p.
func (c *Caller) Can(p artifact.Permission) bool { return c.Perms[p] }

// Request is what every operation gets besides its own input.
type Request struct {
	Caller
	ProjectID string
	// IdemKey and Fingerprint identify a mutation for replay (unused by reads).
	IdemKey     string
	Fingerprint string
	// Origin is added to the audit row's details: where a mutation came
	// from when not from an API call (e.g. an ECR push event).
	Origin map[string]any
}

// Result is a response the HTTP layer sends as is.
type Result struct {
	Status     int
	Body       []byte
	Replayed   bool
	ArtifactID string
}

// Service runs the operations.
type Service struct {
	Store        Store
	Repositories Repositories // nil: intents do not touch the registry
	Cursor       *cursor.Codec
	RegistryHost string
	// PullThroughPrefix is the repository namespace of the registry's
	// pull-through caches (default "pull-through"): pull_through_cache
	// artifacts and the policy's prefixes lie under it.
	PullThroughPrefix string
	Now               func() time.Time
	NewID             func(prefix string) string
	// MaxAttempts bounds re-reads after a concurrent change (default 8).
	MaxAttempts int
	// Sleep waits between attempts (default: jittered, at most ~50ms).
	Sleep func(ctx context.Context, attempt int)
}

func (s *Service) pullThrough() string {
	if s.PullThroughPrefix == "" {
		return DefaultPullThroughPrefix
	}
	return strings.TrimSuffix(s.PullThroughPrefix, "/")
}

// DefaultPullThroughPrefix is template.yaml's PullThroughRepositoryPrefix default.
const DefaultPullThroughPrefix = "pull-through"

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Millisecond) }

func (s *Service) maxAttempts() int {
	if s.MaxAttempts > 0 {
		return s.MaxAttempts
	}
	return 8
}

func (s *Service) sleep(ctx context.Context, attempt int) {
	if s.Sleep != nil {
		s.Sleep(ctx, attempt)
		return
	}
	d := time.Duration(1+rand.IntN(5*(attempt+1))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func forbidden(perm artifact.Permission) error {
	return artifact.Forbidden("role_required", "the caller's roles do not grant this action on the project",
		"required_permission", string(perm), "roles_granting", artifact.RolesGranting(perm))
}

func orgMismatch() error {
	return artifact.Forbidden("org_mismatch", "the project belongs to another organization")
}

func notFound() error {
	return artifact.Errorf(artifact.CodeNotFound, "artifact_not_found", "no such artifact in this project")
}

func (s *Service) scope(r *Request) IdemScope {
	return IdemScope{ProjectID: r.ProjectID, PrincipalID: r.Principal.PrincipalID, Key: r.IdemKey}
}

func (s *Service) record(r *Request, now time.Time, status int, body []byte, artifactID string) *IdemRecord {
	return &IdemRecord{IdemScope: s.scope(r), Fingerprint: r.Fingerprint, Status: status, Body: body,
		ArtifactID: artifactID, CreatedAt: now, ExpiresAt: now.Add(IdemTTL)}
}

// replay answers from a stored first response, or refuses a key reused with
// another request.
func replay(r *Request, rec *IdemRecord) (*Result, error) {
	if rec.Fingerprint != r.Fingerprint {
		e := artifact.Errorf(artifact.CodeInvalidRequest, "idempotency_key_reused",
			"X-Idempotency-Key was already used with a different request; use a new key for a new request")
		e.Status = http.StatusUnprocessableEntity
		return nil, e
	}
	return &Result{Status: rec.Status, Body: rec.Body, Replayed: true, ArtifactID: rec.ArtifactID}, nil
}

func (s *Service) audit(r *Request, now time.Time, action string, artifactID string, before, after *artifact.Snapshot, details map[string]any) *AuditEvent {
	var aid *string
	if artifactID != "" {
		aid = &artifactID
	}
	var trace *string
	if r.TraceID != "" {
		t := r.TraceID
		trace = &t
	}
	if details == nil {
		details = map[string]any{}
	}
	for k, v := range r.Origin {
		details[k] = v
	}
	return &AuditEvent{
		AuditID: s.NewID("aud"), Action: action, OrgID: r.OrgID, ProjectID: r.ProjectID,
		ArtifactID: aid, Actor: r.Principal, CorrelationID: r.CorrelationID, TraceID: trace,
		IdempotencyKey: r.IdemKey, Before: before, After: after, Details: details, OccurredAt: artifact.Timestamp(now),
	}
}

// commit writes m, translating the store's condition failures into answers.
// A transaction conflict is retried here when nothing was read first
// (retry=true); otherwise ErrRevisionChanged goes back to the caller, which
// reads again and decides again.
func (s *Service) commit(ctx context.Context, r *Request, m *Mutation, retry bool) (*Result, error) {
	for attempt := 0; ; attempt++ {
		err := s.Store.Commit(ctx, m)
		if err == nil {
			return &Result{Status: m.Idem.Status, Body: m.Idem.Body, ArtifactID: m.Idem.ArtifactID}, nil
		}
		if ie, ok := errors.AsType[*IdemExistsError](err); ok {
			return replay(r, ie.Record)
		}
		if errors.Is(err, ErrRevisionChanged) {
			if !retry {
				return nil, err
			}
			if attempt+1 < s.maxAttempts() {
				s.sleep(ctx, attempt)
				continue
			}
		}
		return nil, commitError(err)
	}
}

func commitError(err error) error {
	if de, ok := errors.AsType[*DuplicateError](err); ok {
		reason := "digest_already_registered"
		msg := "this digest is already registered in the project; reuse the existing artifact"
		if de.Field == "app_version" {
			reason = "app_version_already_registered"
			msg = "this app_slug and app_version are already registered in the project; reuse the existing artifact"
		}
		return artifact.Errorf(artifact.CodeAlreadyExists, reason, msg, "field", de.Field, "existing_artifact_id", de.ExistingArtifactID)
	}
	if errors.Is(err, ErrOrgMismatch) {
		return orgMismatch()
	}
	if errors.Is(err, ErrRevisionChanged) {
		return concurrentUpdate()
	}
	if errors.Is(err, ErrSourceNotAllowed) {
		return artifact.Invalid(artifact.ReasonSourceTypeNotAllowed, "source_type", "the project's policy does not allow this source_type")
	}
	return err
}

func concurrentUpdate() error {
	return artifact.Errorf(artifact.CodeStateInvalid, "concurrent_update",
		"the artifact kept changing while this request was applied; read it again and retry with a new idempotency key")
}

func jsonBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, artifact.Internal(err)
	}
	return b, nil
}

// IdemHash is the stable hash of an idempotency scope, used as a storage key.
func IdemHash(sc IdemScope) string {
	h := sha256.New()
	h.Write([]byte(sc.PrincipalID))
	h.Write([]byte{0})
	h.Write([]byte(sc.Key))
	return hex.EncodeToString(h.Sum(nil))
}
