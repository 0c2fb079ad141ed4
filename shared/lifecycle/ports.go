package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// Project is what the store knows about a project: the org of its first
// writer and its artifact policy (nil means the default policy).
type Project struct {
	ProjectID       string
	OrgID           string
	Policy          *artifact.Policy
	PolicyRevision  int64
	PolicyUpdatedAt *time.Time
	PolicyUpdatedBy *artifact.Principal
}

// PolicyUpdate replaces a project's policy if its revision is still
// ExpectRevision, claiming the project for OrgID if nobody owns it yet.
type PolicyUpdate struct {
	OrgID          string
	ProjectID      string
	Policy         *artifact.Policy
	ExpectRevision int64
	Revision       int64
	UpdatedAt      time.Time
	UpdatedBy      artifact.Principal
}

// IdemScope names an idempotency record: (project, principal, key).
type IdemScope struct {
	ProjectID   string
	PrincipalID string
	Key         string
}

// IdemRecord is a stored first response.
type IdemRecord struct {
	IdemScope
	Fingerprint string
	Status      int
	Body        []byte
	ArtifactID  string
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// AuditEvent is one row of evidence for a privileged mutation.
type AuditEvent struct {
	AuditID        string             `json:"audit_id"`
	Action         string             `json:"action"`
	OrgID          string             `json:"org_id"`
	ProjectID      string             `json:"project_id"`
	ArtifactID     *string            `json:"artifact_id"`
	Actor          artifact.Principal `json:"actor"`
	CorrelationID  string             `json:"correlation_id"`
	TraceID        *string            `json:"trace_id"`
	IdempotencyKey string             `json:"idempotency_key"`
	Before         *artifact.Snapshot `json:"before"`
	After          *artifact.Snapshot `json:"after"`
	Details        map[string]any     `json:"details"`
	OccurredAt     artifact.Timestamp `json:"occurred_at"`
}

// MutationView is the one consistent read a transition starts from.
type MutationView struct {
	Artifact *artifact.Artifact // nil if absent from the project
	Project  *Project           // nil if the project has no writes yet
	Idem     *IdemRecord        // nil if absent
}

// Mutation is everything one privileged request writes, committed in one
// transaction: the idempotency record first, then the change, then the audit row.
type Mutation struct {
	// Idem is the stored first response; nil for writers without a caller
	// key (the verifier dedupes on the revision it read instead).
	Idem *IdemRecord
	Now  time.Time

	// ClaimProject records OrgID as the project's org if it has none and
	// fails with ErrOrgMismatch if another org owns it.
	ClaimProject *Project

	// NewArtifact is inserted with its digest and app version uniqueness guards.
	NewArtifact *artifact.Artifact
	// FulfilIntent marks an open, unexpired intent fulfilled by NewArtifact.
	FulfilIntent *string

	// UpdateArtifact replaces the artifact if its revision is still ExpectRevision.
	UpdateArtifact *artifact.Artifact
	// CheckArtifact only asserts the artifact is still at ExpectRevision.
	CheckArtifact  *artifact.Artifact
	ExpectRevision int64

	NewIntent *artifact.PublishIntent

	UpdatePolicy *PolicyUpdate

	Audit *AuditEvent
}

// Errors a Store's Commit returns for failed conditions. Everything else it
// returns is an *artifact.Error (service_unavailable, internal_error).
var (
	// ErrRevisionChanged: the artifact moved since it was read, or a
	// transaction conflict; re-read and decide again.
	ErrRevisionChanged = errors.New("lifecycle: artifact changed concurrently")
	// ErrOrgMismatch: the project belongs to another org.
	ErrOrgMismatch = errors.New("lifecycle: project belongs to another org")
	// ErrSourceNotAllowed: the project's policy does not accept the source type.
	ErrSourceNotAllowed = errors.New("lifecycle: source type not allowed by policy")
)

// IdemExistsError carries the record that won the key.
type IdemExistsError struct{ Record *IdemRecord }

func (e *IdemExistsError) Error() string { return "lifecycle: idempotency key already used" }

// DuplicateError says the digest or the app version is taken in the project.
type DuplicateError struct {
	Field              string // "digest" or "app_version"
	ExistingArtifactID string
}

func (e *DuplicateError) Error() string { return "lifecycle: duplicate " + e.Field }

// IntentError says why a publish intent could not be fulfilled. Intent is the
// stored intent, nil if none exists in the project.
type IntentError struct{ Intent *artifact.PublishIntent }

func (e *IntentError) Error() string { return "lifecycle: publish intent cannot be fulfilled" }

// ListQuery selects a page of a project's artifacts.
type ListQuery struct {
	LifecycleState string
	TrustState     string
	AppSlug        string
	AppVersion     string
	Channel        string
	Limit          int
	AfterID        string // exclusive start: the last artifact id of the previous page
}

// ListResult is a page, newest first.
type ListResult struct {
	Items   []*artifact.Artifact
	Project *Project // set when the page began at the top
	More    bool
	// Last is the artifact id the page's reading ended at when More: the
	// last item, or (a filtered page that matched little or nothing) the
	// last artifact evaluated, so the next page starts after it.
	Last string
}

// Store is the persistence port. Every method makes the DynamoDB round
// trips the performance budget allows: one each.
type Store interface {
	// GetArtifact reads an artifact and its project in one round trip.
	// Absent items are nil. Errors: service_unavailable, internal_error.
	GetArtifact(ctx context.Context, projectID, artifactID string) (*artifact.Artifact, *Project, error)
	// LoadForMutation reads the artifact, its project and the idempotency
	// record consistently in one round trip.
	LoadForMutation(ctx context.Context, projectID, artifactID string, idem IdemScope) (*MutationView, error)
	// Commit writes m in one transaction. Errors: *IdemExistsError,
	// *DuplicateError, *IntentError, ErrOrgMismatch, ErrRevisionChanged,
	// service_unavailable, internal_error.
	Commit(ctx context.Context, m *Mutation) error
	// LoadProject reads the project and, when idem is set, the idempotency
	// record, in one consistent round trip.
	LoadProject(ctx context.Context, projectID string, idem *IdemScope) (*Project, *IdemRecord, error)
	// GetIntent reads a publish intent and its project in one round trip.
	GetIntent(ctx context.Context, projectID, intentID string) (*artifact.PublishIntent, *Project, error)
	// IntentsFor lists the intents issued for a repository name and tag,
	// newest first, read consistently (so an intent created just before its
	// push is found): a Query and a BatchGetItem.
	IntentsFor(ctx context.Context, repositoryName, tag string) ([]*artifact.PublishIntent, error)
	// AuditEvents reads one page of a project's audit rows, newest first,
	// in one round trip.
	AuditEvents(ctx context.Context, projectID string, q AuditQuery) (*AuditPage, error)
	// ListArtifacts reads one page in one round trip.
	ListArtifacts(ctx context.Context, projectID string, q ListQuery) (*ListResult, error)
}

// Repositories is the platform registry port: publish intents make sure the
// repository they hand out exists.
type Repositories interface {
	// EnsureRepository creates the repository if needed; an existing one is success.
	EnsureRepository(ctx context.Context, name string) error
}

// AuditQuery selects audit rows of a project.
type AuditQuery struct {
	ArtifactID    string
	CorrelationID string
	Action        string
	Limit         int
	AfterID       string // exclusive start: the last audit id of the previous page
}

// AuditPage is a page of audit rows, newest first.
type AuditPage struct {
	Items []*AuditEvent
	More  bool
	Last  string // as ListResult.Last: the audit id the reading ended at
}
