package artifact

import (
	"slices"
	"time"
)

// LifecycleState is where an artifact is in its publication life.
type LifecycleState string

// Lifecycle states.
const (
	Published  LifecycleState = "published"
	Promoted   LifecycleState = "promoted"
	Deprecated LifecycleState = "deprecated"
	Retired    LifecycleState = "retired"
)

// LifecycleStates lists every lifecycle state, for exhaustive tests.
var LifecycleStates = []LifecycleState{Published, Promoted, Deprecated, Retired}

// TrustState is what the platform believes about an artifact's integrity.
type TrustState string

// Trust states.
const (
	Unverified         TrustState = "unverified"
	Verified           TrustState = "verified"
	FailedVerification TrustState = "failed_verification"
	Revoked            TrustState = "revoked"
)

// TrustStates lists every trust state, for exhaustive tests.
var TrustStates = []TrustState{Unverified, Verified, FailedVerification, Revoked}

// Kind is the artifact's OCI flavour.
type Kind string

// Artifact kinds.
const (
	KindContainerImage Kind = "container_image"
	KindHelmChart      Kind = "helm_chart"
	KindOCIArtifact    Kind = "oci_artifact"
)

// SourceType says how the artifact reached the platform registry.
type SourceType string

// Source types.
const (
	SourcePlatformPush     SourceType = "platform_push"
	SourcePullThroughCache SourceType = "pull_through_cache"
)

// PrincipalType distinguishes humans from automation.
type PrincipalType string

// Principal types.
const (
	PrincipalUser           PrincipalType = "user"
	PrincipalServiceAccount PrincipalType = "service_account"
)

// Principal identifies who did something.
type Principal struct {
	PrincipalID   string        `json:"principal_id" dynamodbav:"principal_id"`
	PrincipalType PrincipalType `json:"principal_type" dynamodbav:"principal_type"`
}

// Artifact is an OCI artifact registered by immutable digest in a project.
type Artifact struct {
	ArtifactID      string         `json:"artifact_id"`
	OrgID           string         `json:"org_id"`
	ProjectID       string         `json:"project_id"`
	AppSlug         string         `json:"app_slug"`
	AppVersion      string         `json:"app_version"`
	Repository      string         `json:"repository"`
	Digest          string         `json:"digest"`
	DigestAlgorithm string         `json:"digest_algorithm"`
	Kind            Kind           `json:"artifact_kind"`
	SourceType      SourceType     `json:"source_type"`
	MediaType       string         `json:"media_type"`
	Lifecycle       LifecycleState `json:"lifecycle_state"`
	Trust           TrustState     `json:"trust_state"`
	TrustReason     *string        `json:"trust_reason"`
	Channels        []string       `json:"channels"`
	// SignatureKeyID names the trusted key whose signature the verifier
	// checked, or null; channels that require signatures need it.
	SignatureKeyID  *string   `json:"signature_key_id"`
	PublishIntentID *string   `json:"publish_intent_id"`
	CreatedBy       Principal `json:"created_by"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	Revision        int64     `json:"revision"`
}

// Snapshot is the part of an artifact an audit row records before and after.
type Snapshot struct {
	Lifecycle LifecycleState `json:"lifecycle_state" dynamodbav:"lifecycle_state"`
	Trust     TrustState     `json:"trust_state" dynamodbav:"trust_state"`
	Channels  []string       `json:"channels" dynamodbav:"channels"`
}

// Snapshot returns the audited view of a.
func (a *Artifact) Snapshot() *Snapshot {
	return &Snapshot{Lifecycle: a.Lifecycle, Trust: a.Trust, Channels: slices.Clone(a.Channels)}
}

// Clone returns a deep copy.
func (a *Artifact) Clone() *Artifact {
	c := *a
	c.Channels = slices.Clone(a.Channels)
	if a.TrustReason != nil {
		r := *a.TrustReason
		c.TrustReason = &r
	}
	if a.PublishIntentID != nil {
		p := *a.PublishIntentID
		c.PublishIntentID = &p
	}
	if a.SignatureKeyID != nil {
		k := *a.SignatureKeyID
		c.SignatureKeyID = &k
	}
	return &c
}

// IntentStatus is a publish intent's state.
type IntentStatus string

// Publish intent states.
const (
	IntentOpen      IntentStatus = "open"
	IntentFulfilled IntentStatus = "fulfilled"
	IntentExpired   IntentStatus = "expired"
)

// IntentTTL is how long a publish intent stays open.
const IntentTTL = 24 * time.Hour

// PublishIntent reserves a platform repository and tag for an app version.
type PublishIntent struct {
	IntentID       string       `json:"intent_id"`
	OrgID          string       `json:"org_id"`
	ProjectID      string       `json:"project_id"`
	AppSlug        string       `json:"app_slug"`
	AppVersion     string       `json:"app_version"`
	Kind           Kind         `json:"artifact_kind"`
	SourceType     SourceType   `json:"source_type"`
	RepositoryName string       `json:"repository_name"`
	Repository     string       `json:"repository"`
	Tag            string       `json:"tag"`
	Status         IntentStatus `json:"status"`
	ArtifactID     *string      `json:"artifact_id"`
	CreatedBy      Principal    `json:"created_by"`
	CreatedAt      time.Time    `json:"created_at"`
	ExpiresAt      time.Time    `json:"expires_at"`
}

// StatusAt is the intent's status as seen at now: an open intent past its
// expiry is expired whether or not anything rewrote the stored item.
func (p *PublishIntent) StatusAt(now time.Time) IntentStatus {
	if p.Status == IntentOpen && !now.Before(p.ExpiresAt) {
		return IntentExpired
	}
	return p.Status
}

// RepositoryName is the platform naming model for a project's app repository.
func RepositoryName(orgID, projectID, appSlug string) string {
	return "gpuaas/" + orgID + "/" + projectID + "/" + appSlug
}
