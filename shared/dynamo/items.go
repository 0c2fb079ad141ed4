package dynamo

import (
	"strings"
	"time"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// Single-table layout. Every item has PK, SK and entity. Audit rows also
// carry GSI1 (by artifact) and GSI2 (by correlation id) keys.
//
//	entity    PK                                   SK
//	artifact  PROJECT#<project>                    ARTIFACT#<artifact_id>
//	project   PROJECT#<project>                    PROJECT   (sorts after every artifact)
//	guard     DIGEST#<project>#<digest>            GUARD
//	guard     APPVER#<project>#<slug>#<version>    GUARD
//	idem      IDEMP#<project>#<sha256(principal,key)>  IDEMP
//	intent    INTENT#<project>                     <intent_id>
//	intentref INTENTREF#<repository>#<tag>         <intent_id>   (points at the intent; read consistently by the registrar)
//	guard     SOURCEBLOCK#<project>#<source_type>  GUARD     (exists while policy refuses it)
//	audit     AUDIT#<project>                      <audit_id>
const (
	attrPK        = "PK"
	attrSK        = "SK"
	attrEntity    = "entity"
	skProject     = "PROJECT"
	skGuard       = "GUARD"
	skIdem        = "IDEMP"
	artifactSKPfx = "ARTIFACT#"

	entityArtifact  = "artifact"
	entityProject   = "project"
	entityGuard     = "guard"
	entityIdem      = "idempotency"
	entityIntent    = "publish_intent"
	entityIntentRef = "intent_ref"
	entityAudit     = "audit"

	// AuditRetention keeps audit rows this long before TTL may delete them.
	AuditRetention = 400 * 24 * time.Hour
	// IntentRetention keeps intents readable this long after they expire.
	IntentRetention = 30 * 24 * time.Hour
)

func projectPK(projectID string) string { return "PROJECT#" + projectID }

func artifactSK(artifactID string) string { return artifactSKPfx + artifactID }

func digestPK(projectID, digest string) string { return "DIGEST#" + projectID + "#" + digest }

func appVersionPK(projectID, slug, version string) string {
	return "APPVER#" + projectID + "#" + slug + "#" + version
}

func idemPK(sc lifecycle.IdemScope) string {
	return "IDEMP#" + sc.ProjectID + "#" + lifecycle.IdemHash(sc)
}

func intentPK(projectID string) string { return "INTENT#" + projectID }

func auditPK(projectID string) string { return "AUDIT#" + projectID }

// AuditByArtifactKey and AuditByCorrelationKey are the GSI partition keys of audit rows.
func AuditByArtifactKey(projectID, artifactID string) string {
	return "AUDIT#" + projectID + "#ARTIFACT#" + artifactID
}

// IntentRefKey is GSI1's partition key for the intents of a repository and tag.
func IntentRefKey(repositoryName, tag string) string {
	return "INTENTREF#" + repositoryName + "#" + tag
}

// AuditByCorrelationKey is GSI2's partition key for a correlation id.
func AuditByCorrelationKey(projectID, correlationID string) string {
	return "AUDIT#" + projectID + "#CORR#" + correlationID
}

type key struct {
	PK string `dynamodbav:"PK,omitempty"`
	SK string `dynamodbav:"SK,omitempty"`
}

type artifactItem struct {
	key
	Entity          string                  `dynamodbav:"entity"`
	ArtifactID      string                  `dynamodbav:"artifact_id"`
	OrgID           string                  `dynamodbav:"org_id"`
	ProjectID       string                  `dynamodbav:"project_id"`
	AppSlug         string                  `dynamodbav:"app_slug"`
	AppVersion      string                  `dynamodbav:"app_version"`
	Repository      string                  `dynamodbav:"repository"`
	Digest          string                  `dynamodbav:"digest"`
	DigestAlgorithm string                  `dynamodbav:"digest_algorithm"`
	Kind            artifact.Kind           `dynamodbav:"artifact_kind"`
	SourceType      artifact.SourceType     `dynamodbav:"source_type"`
	MediaType       string                  `dynamodbav:"media_type"`
	Lifecycle       artifact.LifecycleState `dynamodbav:"lifecycle_state"`
	Trust           artifact.TrustState     `dynamodbav:"trust_state"`
	TrustReason     *string                 `dynamodbav:"trust_reason"`
	Channels        []string                `dynamodbav:"channels"`
	// ChannelIndex is "|a|b|": a string every engine can filter with
	// contains(), present even when the artifact is in no channel.
	ChannelIndex    string             `dynamodbav:"channel_index,omitempty"`
	SignatureKeyID  *string            `dynamodbav:"signature_key_id"`
	PublishIntentID *string            `dynamodbav:"publish_intent_id"`
	CreatedBy       artifact.Principal `dynamodbav:"created_by"`
	CreatedAt       time.Time          `dynamodbav:"created_at"`
	UpdatedAt       time.Time          `dynamodbav:"updated_at"`
	Revision        int64              `dynamodbav:"revision"`
}

func toArtifactItem(a *artifact.Artifact) *artifactItem {
	ch := a.Channels
	if ch == nil {
		ch = []string{}
	}
	return &artifactItem{
		key:    key{PK: projectPK(a.ProjectID), SK: artifactSK(a.ArtifactID)},
		Entity: entityArtifact, ArtifactID: a.ArtifactID, OrgID: a.OrgID, ProjectID: a.ProjectID,
		AppSlug: a.AppSlug, AppVersion: a.AppVersion, Repository: a.Repository, Digest: a.Digest,
		DigestAlgorithm: a.DigestAlgorithm, Kind: a.Kind, SourceType: a.SourceType, MediaType: a.MediaType,
		Lifecycle: a.Lifecycle, Trust: a.Trust, TrustReason: a.TrustReason, Channels: ch,
		ChannelIndex: "|" + strings.Join(ch, "|") + "|", SignatureKeyID: a.SignatureKeyID,
		PublishIntentID: a.PublishIntentID, CreatedBy: a.CreatedBy, CreatedAt: a.CreatedAt.UTC(),
		UpdatedAt: a.UpdatedAt.UTC(), Revision: a.Revision,
	}
}

func (it *artifactItem) artifact() *artifact.Artifact {
	ch := it.Channels
	if ch == nil {
		ch = []string{}
	}
	return &artifact.Artifact{
		ArtifactID: it.ArtifactID, OrgID: it.OrgID, ProjectID: it.ProjectID, AppSlug: it.AppSlug,
		AppVersion: it.AppVersion, Repository: it.Repository, Digest: it.Digest, DigestAlgorithm: it.DigestAlgorithm,
		Kind: it.Kind, SourceType: it.SourceType, MediaType: it.MediaType, Lifecycle: it.Lifecycle,
		Trust: it.Trust, TrustReason: it.TrustReason, Channels: ch, PublishIntentID: it.PublishIntentID, SignatureKeyID: it.SignatureKeyID,
		CreatedBy: it.CreatedBy, CreatedAt: it.CreatedAt.UTC(), UpdatedAt: it.UpdatedAt.UTC(), Revision: it.Revision,
	}
}

type projectItem struct {
	key
	Entity          string              `dynamodbav:"entity"`
	ProjectID       string              `dynamodbav:"project_id"`
	OrgID           string              `dynamodbav:"org_id"`
	Policy          *artifact.Policy    `dynamodbav:"policy,omitempty"`
	PolicyRevision  int64               `dynamodbav:"policy_revision"`
	PolicyUpdatedAt *time.Time          `dynamodbav:"policy_updated_at,omitempty"`
	PolicyUpdatedBy *artifact.Principal `dynamodbav:"policy_updated_by,omitempty"`
}

// sourceBlockPK names the item that exists while a project's policy refuses
// a source type; registration checks its absence in its transaction.
func sourceBlockPK(projectID string, s artifact.SourceType) string {
	return "SOURCEBLOCK#" + projectID + "#" + string(s)
}

// normalizePolicy restores the empty lists storage leaves out.
func normalizePolicy(p *artifact.Policy) *artifact.Policy {
	if p == nil {
		return nil
	}
	if p.TrustedKeys == nil {
		p.TrustedKeys = []artifact.TrustedKey{}
	}
	if p.PullThroughPrefixes == nil {
		p.PullThroughPrefixes = []string{}
	}
	if p.AllowedSourceTypes == nil {
		p.AllowedSourceTypes = []artifact.SourceType{}
	}
	if p.Channels == nil {
		p.Channels = []artifact.Channel{}
	}
	return p
}

type idemItem struct {
	key
	Entity         string    `dynamodbav:"entity"`
	ProjectID      string    `dynamodbav:"project_id"`
	PrincipalID    string    `dynamodbav:"principal_id"`
	IdempotencyKey string    `dynamodbav:"idempotency_key"`
	Fingerprint    string    `dynamodbav:"fingerprint"`
	StatusCode     int       `dynamodbav:"status_code"`
	Body           []byte    `dynamodbav:"body"`
	ArtifactID     string    `dynamodbav:"artifact_id"`
	CreatedAt      time.Time `dynamodbav:"created_at"`
	ExpiresAt      int64     `dynamodbav:"expires_at"`
}

func (it *idemItem) record() *lifecycle.IdemRecord {
	return &lifecycle.IdemRecord{
		IdemScope:   lifecycle.IdemScope{ProjectID: it.ProjectID, PrincipalID: it.PrincipalID, Key: it.IdempotencyKey},
		Fingerprint: it.Fingerprint, Status: it.StatusCode, Body: it.Body, ArtifactID: it.ArtifactID,
		CreatedAt: it.CreatedAt, ExpiresAt: time.Unix(it.ExpiresAt, 0).UTC(),
	}
}

type intentItem struct {
	key
	Entity         string                `dynamodbav:"entity"`
	IntentID       string                `dynamodbav:"intent_id"`
	OrgID          string                `dynamodbav:"org_id"`
	ProjectID      string                `dynamodbav:"project_id"`
	AppSlug        string                `dynamodbav:"app_slug"`
	AppVersion     string                `dynamodbav:"app_version"`
	Kind           artifact.Kind         `dynamodbav:"artifact_kind"`
	SourceType     artifact.SourceType   `dynamodbav:"source_type"`
	RepositoryName string                `dynamodbav:"repository_name"`
	Repository     string                `dynamodbav:"repository"`
	Tag            string                `dynamodbav:"tag"`
	Status         artifact.IntentStatus `dynamodbav:"status"`
	ArtifactID     *string               `dynamodbav:"artifact_id"`
	CreatedBy      artifact.Principal    `dynamodbav:"created_by"`
	CreatedAt      time.Time             `dynamodbav:"created_at"`
	ExpiresAt      time.Time             `dynamodbav:"expires_at"`
	ExpiresEpoch   int64                 `dynamodbav:"expires_epoch"`
	TTL            int64                 `dynamodbav:"ttl"`
}

func toIntentItem(p *artifact.PublishIntent) *intentItem {
	return &intentItem{
		key:    key{PK: intentPK(p.ProjectID), SK: p.IntentID},
		Entity: entityIntent, IntentID: p.IntentID, OrgID: p.OrgID, ProjectID: p.ProjectID,
		AppSlug: p.AppSlug, AppVersion: p.AppVersion, Kind: p.Kind, SourceType: p.SourceType,
		RepositoryName: p.RepositoryName, Repository: p.Repository, Tag: p.Tag, Status: p.Status,
		ArtifactID: p.ArtifactID, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt.UTC(), ExpiresAt: p.ExpiresAt.UTC(),
		ExpiresEpoch: p.ExpiresAt.Unix(), TTL: p.ExpiresAt.Add(IntentRetention).Unix(),
	}
}

// intentRefItem finds an intent by the repository and tag it reserves, on
// the table itself (not an index), so that a push arriving right after its
// intent was created finds it: a Query on the table can be consistent, a
// Query on a global secondary index cannot. It never changes; the intent
// it points at holds the status.
type intentRefItem struct {
	key
	Entity    string `dynamodbav:"entity"`
	ProjectID string `dynamodbav:"project_id"`
	IntentID  string `dynamodbav:"intent_id"`
	TTL       int64  `dynamodbav:"ttl"`
}

func toIntentRefItem(p *artifact.PublishIntent) *intentRefItem {
	return &intentRefItem{
		key:    key{PK: IntentRefKey(p.RepositoryName, p.Tag), SK: p.IntentID},
		Entity: entityIntentRef, ProjectID: p.ProjectID, IntentID: p.IntentID,
		TTL: p.ExpiresAt.Add(IntentRetention).Unix(),
	}
}

func (it *intentItem) intent() *artifact.PublishIntent {
	return &artifact.PublishIntent{
		IntentID: it.IntentID, OrgID: it.OrgID, ProjectID: it.ProjectID, AppSlug: it.AppSlug,
		AppVersion: it.AppVersion, Kind: it.Kind, SourceType: it.SourceType, RepositoryName: it.RepositoryName,
		Repository: it.Repository, Tag: it.Tag, Status: it.Status, ArtifactID: it.ArtifactID,
		CreatedBy: it.CreatedBy, CreatedAt: it.CreatedAt.UTC(), ExpiresAt: it.ExpiresAt.UTC(),
	}
}

type auditItem struct {
	key
	Entity         string             `dynamodbav:"entity"`
	GSI1PK         string             `dynamodbav:"GSI1PK,omitempty"`
	GSI1SK         string             `dynamodbav:"GSI1SK,omitempty"`
	GSI2PK         string             `dynamodbav:"GSI2PK"`
	GSI2SK         string             `dynamodbav:"GSI2SK"`
	AuditID        string             `dynamodbav:"audit_id"`
	Action         string             `dynamodbav:"action"`
	OrgID          string             `dynamodbav:"org_id"`
	ProjectID      string             `dynamodbav:"project_id"`
	ArtifactID     *string            `dynamodbav:"artifact_id"`
	Actor          artifact.Principal `dynamodbav:"actor"`
	CorrelationID  string             `dynamodbav:"correlation_id"`
	TraceID        *string            `dynamodbav:"trace_id"`
	IdempotencyKey string             `dynamodbav:"idempotency_key"`
	Before         *artifact.Snapshot `dynamodbav:"before"`
	After          *artifact.Snapshot `dynamodbav:"after"`
	Details        map[string]any     `dynamodbav:"details"`
	OccurredAt     time.Time          `dynamodbav:"occurred_at"`
	// Artifact is the artifact after the change, carried so the event
	// published from the stream holds it without another read.
	Artifact *artifactItem `dynamodbav:"artifact,omitempty"`
	TTL      int64         `dynamodbav:"ttl"`
}

func toAuditItem(e *lifecycle.AuditEvent, after *artifact.Artifact) *auditItem {
	it := &auditItem{
		key:    key{PK: auditPK(e.ProjectID), SK: e.AuditID},
		Entity: entityAudit, GSI2PK: AuditByCorrelationKey(e.ProjectID, e.CorrelationID), GSI2SK: e.AuditID,
		AuditID: e.AuditID, Action: e.Action, OrgID: e.OrgID, ProjectID: e.ProjectID, ArtifactID: e.ArtifactID,
		Actor: e.Actor, CorrelationID: e.CorrelationID, TraceID: e.TraceID, IdempotencyKey: e.IdempotencyKey,
		Before: e.Before, After: e.After, Details: e.Details, OccurredAt: time.Time(e.OccurredAt).UTC(),
		TTL: time.Time(e.OccurredAt).Add(AuditRetention).Unix(),
	}
	if e.ArtifactID != nil {
		it.GSI1PK, it.GSI1SK = AuditByArtifactKey(e.ProjectID, *e.ArtifactID), e.AuditID
	}
	if after != nil {
		it.Artifact = toArtifactItem(after)
	}
	return it
}
