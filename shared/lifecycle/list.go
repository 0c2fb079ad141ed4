package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// List page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 100
)

var listParams = []string{"lifecycle_state", "trust_state", "app_slug", "app_version", "channel", "limit", "cursor"}

type listPosition struct {
	V       int    `json:"v"`
	Project string `json:"p"`
	Org     string `json:"o"`
	Filter  string `json:"f"`
	After   string `json:"a"`
}

type listBody struct {
	Items      []*artifact.Artifact `json:"items"`
	NextCursor *string              `json:"next_cursor"`
}

func badParam(name, msg string) error {
	e := artifact.Invalid("invalid_query_parameter", "", msg)
	e.Details["parameter"] = name
	return e
}

// List returns a page of the project's artifacts, newest first.
func (s *Service) List(ctx context.Context, r *Request, params map[string]string) (*Result, error) {
	if !r.Can(artifact.PermRead) {
		return nil, forbidden(artifact.PermRead)
	}
	q, cur, err := parseList(params)
	if err != nil {
		return nil, err
	}
	filter := filterHash(q)
	if cur != "" {
		var pos listPosition
		if s.Cursor.Open(cur, &pos) != nil || pos.V != 1 || pos.Project != r.ProjectID || pos.Filter != filter || pos.After == "" {
			return nil, artifact.Invalid("invalid_cursor", "", "cursor is not one this service issued for this query")
		}
		if pos.Org != r.OrgID {
			return nil, orgMismatch()
		}
		q.AfterID = pos.After
	}
	page, err := s.Store.ListArtifacts(ctx, r.ProjectID, q)
	if err != nil {
		return nil, err
	}
	if page.Project != nil && page.Project.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	for _, a := range page.Items {
		if a.OrgID != r.OrgID {
			return nil, orgMismatch()
		}
	}
	out := listBody{Items: page.Items}
	if out.Items == nil {
		out.Items = []*artifact.Artifact{}
	}
	if page.More && len(page.Items) > 0 {
		tok, err := s.Cursor.Seal(listPosition{V: 1, Project: r.ProjectID, Org: r.OrgID, Filter: filter, After: page.Items[len(page.Items)-1].ArtifactID})
		if err != nil {
			return nil, artifact.Internal(err)
		}
		out.NextCursor = &tok
	}
	body, err := jsonBody(out)
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusOK, Body: body}, nil
}

func parseList(params map[string]string) (ListQuery, string, error) {
	q := ListQuery{Limit: DefaultLimit}
	for k := range params {
		if !slices.Contains(listParams, k) {
			return q, "", badParam(k, "unknown query parameter "+strconv.Quote(k))
		}
	}
	q.LifecycleState = params["lifecycle_state"]
	if q.LifecycleState != "" && !slices.Contains(artifact.LifecycleStates, artifact.LifecycleState(q.LifecycleState)) {
		return q, "", badParam("lifecycle_state", "lifecycle_state must be published, promoted, deprecated or retired")
	}
	q.TrustState = params["trust_state"]
	if q.TrustState != "" && !slices.Contains(artifact.TrustStates, artifact.TrustState(q.TrustState)) {
		return q, "", badParam("trust_state", "trust_state must be unverified, verified, failed_verification or revoked")
	}
	q.AppSlug = params["app_slug"]
	if q.AppSlug != "" && !artifact.ValidSlug(q.AppSlug) {
		return q, "", badParam("app_slug", "app_slug is not a valid slug")
	}
	q.AppVersion = params["app_version"]
	if q.AppVersion != "" && !artifact.ValidVersion(q.AppVersion) {
		return q, "", badParam("app_version", "app_version is not a valid OCI tag")
	}
	q.Channel = params["channel"]
	if q.Channel != "" && !artifact.ValidToken(q.Channel, 1, 64) {
		return q, "", badParam("channel", "channel is not a valid channel name")
	}
	if l, ok := params["limit"]; ok {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return q, "", badParam("limit", "limit must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	return q, params["cursor"], nil
}

func filterHash(q ListQuery) string {
	h := sha256.New()
	for _, v := range []string{q.LifecycleState, q.TrustState, q.AppSlug, q.AppVersion, q.Channel} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
