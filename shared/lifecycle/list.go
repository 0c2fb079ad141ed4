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

// position is what a cursor seals: where a page ended, for which project,
// org and filters.
type position struct {
	V       int    `json:"v"`
	Project string `json:"p"`
	Org     string `json:"o"`
	Filter  string `json:"f"`
	After   string `json:"a"`
}

// pageBody is the body of every list route.
type pageBody[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// openCursor returns where the previous page ended, refusing a cursor that
// is not this service's for this project, org and query.
func (s *Service) openCursor(r *Request, cur, filter string) (string, error) {
	var pos position
	if s.Cursor.Open(cur, &pos) != nil || pos.V != 1 || pos.Project != r.ProjectID || pos.Filter != filter || pos.After == "" {
		return "", artifact.Invalid("invalid_cursor", "", "cursor is not one this service issued for this query")
	}
	if pos.Org != r.OrgID {
		return "", orgMismatch()
	}
	return pos.After, nil
}

// pageResult answers items, with a cursor after lastID when more follow. A
// filtered page may be short, or empty, and still carry a cursor: DynamoDB
// read its limit of items without finding enough that match.
func pageResult[T any](s *Service, r *Request, filter string, items []T, more bool, lastID string) (*Result, error) {
	out := pageBody[T]{Items: items}
	if out.Items == nil {
		out.Items = []T{}
	}
	if more && lastID != "" {
		tok, err := s.Cursor.Seal(position{V: 1, Project: r.ProjectID, Org: r.OrgID, Filter: filter, After: lastID})
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
		if q.AfterID, err = s.openCursor(r, cur, filter); err != nil {
			return nil, err
		}
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
	return pageResult(s, r, filter, page.Items, page.More, page.Last)
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
