package lifecycle

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// AuditActions are the audit row actions (SPEC section 7).
var AuditActions = []string{
	"app_artifact.publish_intent", "app_artifact.register", "app_artifact.promote", "app_artifact.deprecate",
	"app_artifact.retire", "app_artifact.verify", "app_artifact.revoke", "app_artifact.policy_update",
}

// ListAudit answers a page of the project's audit rows, newest first: of
// one artifact (artifactID from the path), or filtered by correlation_id,
// action and artifact_id. Reading the project first keeps a foreign org out
// even of an empty page.
func (s *Service) ListAudit(ctx context.Context, r *Request, artifactID string, params map[string]string) (*Result, error) {
	if !r.Can(artifact.PermAudit) {
		return nil, forbidden(artifact.PermAudit)
	}
	allowed := []string{"correlation_id", "action", "artifact_id", "limit", "cursor"}
	if artifactID != "" {
		allowed = []string{"action", "limit", "cursor"}
		if !artifact.ValidArtifactID(artifactID) {
			return nil, notFound()
		}
	}
	q := AuditQuery{ArtifactID: artifactID, Limit: DefaultLimit}
	for k, v := range params {
		if !slices.Contains(allowed, k) {
			return nil, badParam(k, "unknown query parameter "+strconv.Quote(k))
		}
		switch k {
		case "correlation_id":
			if !artifact.ValidToken(v, 1, 128) {
				return nil, badParam(k, "correlation_id is 1 to 128 characters of [A-Za-z0-9._:-]")
			}
			q.CorrelationID = v
		case "artifact_id":
			if !artifact.ValidArtifactID(v) {
				return nil, badParam(k, "artifact_id is not an id this service issues")
			}
			q.ArtifactID = v
		case "action":
			if !slices.Contains(AuditActions, v) {
				return nil, badParam(k, "action is one of "+strings.Join(AuditActions, ", "))
			}
			q.Action = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				return nil, badParam(k, "limit must be an integer from 1 to 100")
			}
			q.Limit = n
		}
	}
	filter := shortHash(q.ArtifactID + "\x00" + q.CorrelationID + "\x00" + q.Action)
	if cur := params["cursor"]; cur != "" {
		after, err := s.openCursor(r, cur, filter)
		if err != nil {
			return nil, err
		}
		q.AfterID = after
	}
	var p *Project
	var err error
	if artifactID != "" {
		// An artifact's history: 404 for one this project does not have,
		// like every route that names an artifact.
		var a *artifact.Artifact
		if a, p, err = s.Store.GetArtifact(ctx, r.ProjectID, artifactID); err != nil {
			return nil, err
		}
		if p != nil && p.OrgID != r.OrgID {
			return nil, orgMismatch()
		}
		if a == nil {
			return nil, notFound()
		}
	} else if p, _, err = s.Store.LoadProject(ctx, r.ProjectID, nil); err != nil {
		return nil, err
	}
	if p != nil && p.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	var page *AuditPage
	if p == nil {
		page = &AuditPage{Items: []*AuditEvent{}}
	} else if page, err = s.Store.AuditEvents(ctx, r.ProjectID, q); err != nil {
		return nil, err
	}
	return pageResult(s, r, filter, page.Items, page.More, page.Last)
}
