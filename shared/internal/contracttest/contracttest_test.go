package contracttest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/internal/contracttest"
)

const (
	base       = "/api/v1/projects/{project_id}/app-artifacts"
	policyPath = "/api/v1/projects/{project_id}/app-artifact-policy"
	projBase   = "/api/v1/projects/proj-1/app-artifacts"
	artifactID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
	sha256Dig  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func artifact(mut func(m map[string]any)) []byte {
	m := map[string]any{
		"artifact_id":       artifactID,
		"org_id":            "org-1",
		"project_id":        "proj-1",
		"app_slug":          "web-api",
		"app_version":       "1.2.3",
		"repository":        "registry.example.com/gpuaas/org-1/proj-1/web-api",
		"digest":            sha256Dig,
		"digest_algorithm":  "sha256",
		"artifact_kind":     "container_image",
		"source_type":       "platform_push",
		"media_type":        "application/vnd.oci.image.manifest.v1+json",
		"lifecycle_state":   "published",
		"trust_state":       "unverified",
		"trust_reason":      nil,
		"channels":          []string{},
		"publish_intent_id": nil,
		"signature_key_id":  nil,
		"created_by":        map[string]any{"principal_id": "user-1", "principal_type": "user"},
		"created_at":        "2026-01-02T03:04:05Z",
		"updated_at":        "2026-01-02T03:04:05.123456789Z",
		"revision":          1,
	}
	if mut != nil {
		mut(m)
	}
	return mustJSON(m)
}

func intent(mut func(m map[string]any)) []byte {
	m := map[string]any{
		"intent_id":       "01JINTENT0000000000000000",
		"org_id":          "org-1",
		"project_id":      "proj-1",
		"app_slug":        "web-api",
		"app_version":     "1.2.3",
		"artifact_kind":   "container_image",
		"source_type":     "platform_push",
		"repository_name": "gpuaas/org-1/proj-1/web-api",
		"repository":      "registry.example.com/gpuaas/org-1/proj-1/web-api",
		"tag":             "1.2.3",
		"status":          "open",
		"artifact_id":     nil,
		"created_by":      map[string]any{"principal_id": "ci-bot", "principal_type": "service_account"},
		"created_at":      "2026-01-02T03:04:05Z",
		"expires_at":      "2026-01-03T03:04:05Z",
	}
	if mut != nil {
		mut(m)
	}
	return mustJSON(m)
}

func errBody(code, reason string) []byte {
	return mustJSON(map[string]any{"error": map[string]any{
		"code":           code,
		"message":        "something went wrong",
		"correlation_id": "corr-1",
		"details":        map[string]any{"reason": reason, "field": "digest"},
	}})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// stdHeaders is what the lambda handlers emit: canonical-ish keys.
func stdHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/json", "X-Correlation-ID": "corr-1"}
}

func TestLoadValidatesDocument(t *testing.T) {
	d := contracttest.Load(t)
	if got, want := d.T.OpenAPI, "3.0.3"; got != want {
		t.Errorf("openapi = %q, want %q", got, want)
	}
	if d.T.Components == nil || d.T.Components.SecuritySchemes["bearerAuth"] == nil {
		t.Fatal("components.securitySchemes.bearerAuth missing")
	}
	if s := d.T.Components.SecuritySchemes["bearerAuth"].Value; s.Type != "http" || s.Scheme != "bearer" || s.BearerFormat != "JWT" {
		t.Errorf("bearerAuth = %+v, want http bearer JWT", s)
	}
	if d2 := contracttest.Load(t); d2 != d {
		t.Error("Load is not memoised")
	}
}

// The route set itself is held to template.yaml and the code's route table
// by shared/httpapi's TestRouteSetsAgree.

// TestOperationShape pins what every operation declares: security, the
// request headers and the exact set of response statuses.
func TestOperationShape(t *testing.T) {
	d := contracttest.Load(t)
	common := []string{"400", "401", "403", "500", "503"}
	post := []string{"413", "422"}
	tests := []struct {
		method, path, operationID string
		extra                     [][]string
	}{
		{"GET", base, "listArtifacts", [][]string{{"200"}}},
		{"GET", base + "/{artifact_id}", "getArtifact", [][]string{{"200", "404"}}},
		{"POST", base + "/publish-intents", "createPublishIntent", [][]string{{"201", "409", "502"}, post}},
		// Only create-publish-intent calls the registry; register never answers 502.
		{"POST", base, "registerArtifact", [][]string{{"201", "409"}, post}},
		{"POST", base + "/{artifact_id}/promote", "promoteArtifact", [][]string{{"200", "404", "409"}, post}},
		{"POST", base + "/{artifact_id}/deprecate", "deprecateArtifact", [][]string{{"200", "404", "409"}, post}},
		{"POST", base + "/{artifact_id}/retire", "retireArtifact", [][]string{{"200", "404", "409"}, post}},
		{"POST", base + "/{artifact_id}/revoke", "revokeArtifact", [][]string{{"200", "404", "409"}, post}},
		{"POST", base + "/{artifact_id}/verify", "requestVerification", [][]string{{"202", "404", "409"}, post}},
		{"GET", policyPath, "getArtifactPolicy", [][]string{{"200"}}},
		{"GET", base + "/{artifact_id}/audit-events", "listArtifactAuditEvents", [][]string{{"200", "404"}}},
		{"GET", "/api/v1/projects/{project_id}/audit-events", "listAuditEvents", [][]string{{"200"}}},
		{"PUT", policyPath, "putArtifactPolicy", [][]string{{"200", "409"}, post}},
	}
	for _, tc := range tests {
		t.Run(tc.operationID, func(t *testing.T) {
			item := d.T.Paths.Value(tc.path)
			if item == nil {
				t.Fatalf("path %s missing", tc.path)
			}
			op := item.GetOperation(tc.method)
			if op == nil {
				t.Fatalf("%s %s missing", tc.method, tc.path)
			}
			if op.OperationID != tc.operationID {
				t.Errorf("operationId = %q, want %q", op.OperationID, tc.operationID)
			}
			if op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0]["bearerAuth"] == nil {
				t.Errorf("security = %v, want bearerAuth", op.Security)
			}

			want := append([]string(nil), common...)
			for _, e := range tc.extra {
				want = append(want, e...)
			}
			sort.Strings(want)
			var got []string
			for code := range op.Responses.Map() {
				got = append(got, code)
			}
			sort.Strings(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response statuses (-want +got):\n%s", diff)
			}

			params := map[string]bool{}
			for _, p := range append(item.Parameters, op.Parameters...) {
				params[p.Value.In+":"+p.Value.Name] = p.Value.Required
			}
			wantParams := map[string]bool{"path:project_id": true, "header:X-Project-ID": true, "header:X-Correlation-ID": false}
			if strings.Contains(tc.path, "{artifact_id}") {
				wantParams["path:artifact_id"] = true
			}
			if tc.method == "POST" {
				wantParams["header:X-Idempotency-Key"] = true
			}
			for k, req := range wantParams {
				if gotReq, ok := params[k]; !ok || gotReq != req {
					t.Errorf("parameter %s: present=%v required=%v, want required=%v", k, ok, gotReq, req)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	d := contracttest.Load(t)
	withHeaders := func(kv ...string) map[string]string {
		h := stdHeaders()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(h, kv[i])
				continue
			}
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	tests := []struct {
		name    string
		method  string
		path    string
		query   string
		status  int
		headers map[string]string
		body    []byte
		wantErr string // substring; "" means the response must pass
	}{
		// Responses the contract allows.
		{name: "get artifact 200", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(), body: artifact(nil)},
		{name: "lower-case header names", method: "get", path: projBase + "/" + artifactID, status: 200,
			headers: map[string]string{"content-type": "application/json", "x-correlation-id": "corr-1"}, body: artifact(nil)},
		{name: "content type with charset", method: "GET", path: projBase + "/" + artifactID, status: 200,
			headers: withHeaders("Content-Type", "application/json; charset=utf-8"), body: artifact(nil)},
		{name: "promoted verified sha512 artifact", method: "POST", path: projBase + "/" + artifactID + "/promote", status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) {
				m["digest"] = "sha512:" + strings.Repeat("ab", 64)
				m["digest_algorithm"] = "sha512"
				m["lifecycle_state"] = "promoted"
				m["trust_state"] = "verified"
				m["trust_reason"] = "signature_verified"
				m["channels"] = []string{"dev", "production"}
				m["publish_intent_id"] = "01JINTENT0000000000000000"
				m["revision"] = 3
			})},
		{name: "replayed register 201", method: "POST", path: projBase, status: 201,
			headers: withHeaders("Idempotent-Replayed", "true"), body: artifact(nil)},
		{name: "create publish intent 201", method: "POST", path: projBase + "/publish-intents", status: 201, headers: stdHeaders(), body: intent(nil)},
		{name: "list 200 with query", method: "GET", path: projBase, query: "lifecycle_state=published&limit=10", status: 200, headers: stdHeaders(),
			body: mustJSON(map[string]any{"items": []json.RawMessage{artifact(nil)}, "next_cursor": "opaque"})},
		{name: "list 200 last page", method: "GET", path: projBase, status: 200, headers: stdHeaders(),
			body: []byte(`{"items":[],"next_cursor":null}`)},
		{name: "GET publish-intents routes to get-artifact", method: "GET", path: projBase + "/publish-intents", status: 404,
			headers: stdHeaders(), body: errBody("app_artifact_not_found", "")},
		{name: "error envelope 404", method: "GET", path: projBase + "/" + artifactID, status: 404, headers: stdHeaders(),
			body: errBody("app_artifact_not_found", "")},
		{name: "error envelope 409 on deprecate", method: "POST", path: projBase + "/" + artifactID + "/deprecate", status: 409, headers: stdHeaders(),
			body: errBody("app_artifact_state_invalid", "trust_quarantine")},
		{name: "error envelope 422 on register", method: "POST", path: projBase, status: 422, headers: stdHeaders(),
			body: errBody("invalid_request", "idempotency_key_reused")},
		{name: "internal error with empty details", method: "POST", path: projBase + "/" + artifactID + "/retire", status: 500, headers: stdHeaders(),
			body: []byte(`{"error":{"code":"internal_error","message":"internal error","correlation_id":"c","details":{}}}`)},
		{name: "gateway 401 without correlation id", method: "GET", path: projBase, status: 401,
			headers: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"message":"Unauthorized"}`)},

		// Responses the contract refuses.
		{name: "extra field in artifact", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) { m["secret"] = "x" }), wantErr: "doesn't match schema"},
		{name: "extra field in error", method: "GET", path: projBase + "/" + artifactID, status: 404, headers: stdHeaders(),
			body: []byte(`{"error":{"code":"app_artifact_not_found","message":"m","correlation_id":"c","details":{}},"stack":"x"}`), wantErr: "doesn't match schema"},
		{name: "undeclared status 404 on list", method: "GET", path: projBase, status: 404, headers: stdHeaders(),
			body: errBody("app_artifact_not_found", ""), wantErr: "status 404 is not declared"},
		{name: "undeclared status 201 on promote", method: "POST", path: projBase + "/" + artifactID + "/promote", status: 201, headers: stdHeaders(),
			body: artifact(nil), wantErr: "status 201 is not declared"},
		{name: "undeclared status 418", method: "GET", path: projBase + "/" + artifactID, status: 418, headers: stdHeaders(),
			body: errBody("internal_error", ""), wantErr: "not declared"},
		{name: "missing correlation id", method: "GET", path: projBase + "/" + artifactID, status: 200,
			headers: withHeaders("X-Correlation-ID", ""), body: artifact(nil), wantErr: "X-Correlation-ID"},
		{name: "bad Idempotent-Replayed value", method: "POST", path: projBase, status: 201,
			headers: withHeaders("Idempotent-Replayed", "yes"), body: artifact(nil), wantErr: "Idempotent-Replayed"},
		{name: "missing content type", method: "GET", path: projBase + "/" + artifactID, status: 200,
			headers: withHeaders("Content-Type", ""), body: artifact(nil), wantErr: "Content-Type"},
		{name: "null channels", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) { m["channels"] = nil }), wantErr: "doesn't match schema"},
		{name: "missing revision", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) { delete(m, "revision") }), wantErr: "doesn't match schema"},
		{name: "upper-case digest", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) { m["digest"] = strings.ToUpper(sha256Dig) }), wantErr: "doesn't match schema"},
		{name: "unknown lifecycle state", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(func(m map[string]any) { m["lifecycle_state"] = "archived" }), wantErr: "doesn't match schema"},
		{name: "unknown error code", method: "GET", path: projBase + "/" + artifactID, status: 404, headers: stdHeaders(),
			body: errBody("not_found", ""), wantErr: "doesn't match schema"},
		{name: "error without details", method: "GET", path: projBase + "/" + artifactID, status: 404, headers: stdHeaders(),
			body: []byte(`{"error":{"code":"app_artifact_not_found","message":"m","correlation_id":"c"}}`), wantErr: "doesn't match schema"},
		{name: "error body on 200", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: errBody("internal_error", ""), wantErr: "doesn't match schema"},
		{name: "not JSON", method: "GET", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: []byte(`not json`), wantErr: "decode"},
		{name: "unknown route", method: "POST", path: projBase + "/" + artifactID + "/unpublish", status: 200, headers: stdHeaders(),
			body: artifact(nil), wantErr: "no such operation"},
		{name: "method not in contract", method: "DELETE", path: projBase + "/" + artifactID, status: 200, headers: stdHeaders(),
			body: artifact(nil), wantErr: "no such operation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Check(tc.method, tc.path, tc.query, tc.status, tc.headers, tc.body)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Check() = nil, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Check() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestErrorCodeMatchesStatus holds each error status to SPEC section 4's
// codes: an envelope whose code belongs to another status fails, even though
// the code itself is one of the contract's.
func TestErrorCodeMatchesStatus(t *testing.T) {
	d := contracttest.Load(t)
	get := projBase + "/" + artifactID
	tests := []struct {
		name         string
		method, path string
		status       int
		code, reason string
		wantErr      string // substring; "" means the response must pass
	}{
		// The code of the status passes.
		{"400 invalid_request", "GET", get, 400, "invalid_request", "project_context_mismatch", ""},
		{"403 insufficient_permissions", "GET", get, 403, "insufficient_permissions", "role_required", ""},
		{"404 app_artifact_not_found", "GET", get, 404, "app_artifact_not_found", "artifact_not_found", ""},
		{"404 publish intent not found", "GET", projBase + "/publish-intents/01JINTENT0000000000000000", 404, "app_artifact_not_found", "publish_intent_not_found", ""},
		{"413 invalid_request", "POST", projBase, 413, "invalid_request", "body_too_large", ""},
		{"422 invalid_request", "POST", projBase, 422, "invalid_request", "idempotency_key_reused", ""},
		{"409 register already_exists", "POST", projBase, 409, "app_artifact_already_exists", "digest_already_registered", ""},
		{"409 register state_invalid", "POST", projBase, 409, "app_artifact_state_invalid", "publish_intent_not_open", ""},
		{"409 promote state_invalid", "POST", get + "/promote", 409, "app_artifact_state_invalid", "trust_quarantine", ""},
		{"409 create intent state_invalid", "POST", projBase + "/publish-intents", 409, "app_artifact_state_invalid", "concurrent_update", ""},
		{"409 put policy state_invalid", "PUT", "/api/v1/projects/proj-1/app-artifact-policy", 409, "app_artifact_state_invalid", "concurrent_update", ""},
		{"502 upstream_error on create intent", "POST", projBase + "/publish-intents", 502, "upstream_error", "registry_unavailable", ""},
		{"503 service_unavailable", "GET", get, 503, "service_unavailable", "throttled", ""},
		{"500 internal_error", "GET", get, 500, "internal_error", "", ""},

		// Another status's code fails.
		{"404 invalid_request", "GET", get, 404, "invalid_request", "invalid_field", "doesn't match schema"},
		{"404 insufficient_permissions", "GET", get, 404, "insufficient_permissions", "role_required", "doesn't match schema"},
		{"400 app_artifact_not_found", "GET", get, 400, "app_artifact_not_found", "", "doesn't match schema"},
		{"403 invalid_request", "GET", get, 403, "invalid_request", "role_required", "doesn't match schema"},
		{"413 internal_error", "POST", projBase, 413, "internal_error", "", "doesn't match schema"},
		{"422 app_artifact_state_invalid", "POST", projBase, 422, "app_artifact_state_invalid", "idempotency_key_reused", "doesn't match schema"},
		{"409 register invalid_request", "POST", projBase, 409, "invalid_request", "", "doesn't match schema"},
		{"409 promote already_exists", "POST", get + "/promote", 409, "app_artifact_already_exists", "digest_already_registered", "doesn't match schema"},
		{"409 create intent already_exists", "POST", projBase + "/publish-intents", 409, "app_artifact_already_exists", "", "doesn't match schema"},
		{"409 put policy already_exists", "PUT", "/api/v1/projects/proj-1/app-artifact-policy", 409, "app_artifact_already_exists", "", "doesn't match schema"},
		{"500 service_unavailable", "GET", get, 500, "service_unavailable", "", "doesn't match schema"},
		{"502 internal_error", "POST", projBase + "/publish-intents", 502, "internal_error", "", "doesn't match schema"},
		{"503 internal_error", "GET", get, 503, "internal_error", "", "doesn't match schema"},
		{"undeclared 502 on register", "POST", projBase, 502, "upstream_error", "registry_unavailable", "status 502 is not declared"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Check(tc.method, tc.path, "", tc.status, stdHeaders(), errBody(tc.code, tc.reason))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Check() = nil, want an error: %s on %d must not pass", tc.code, tc.status)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Check() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}

	// Every error status of every operation narrows the code: no error
	// response admits all eight.
	for _, rk := range d.Routes() {
		op := d.T.Paths.Value(rk.Path).GetOperation(rk.Method)
		for status := range op.Responses.Map() {
			if status < "400" || status == "401" {
				continue
			}
			path := strings.NewReplacer("{project_id}", "proj-1", "{artifact_id}", artifactID, "{intent_id}", "01JINTENT0000000000000000").Replace(rk.Path)
			var st int
			fmt.Sscan(status, &st)
			passed := 0
			for _, code := range []string{"invalid_request", "insufficient_permissions", "app_artifact_not_found",
				"app_artifact_already_exists", "app_artifact_state_invalid", "service_unavailable", "upstream_error", "internal_error"} {
				if d.Check(rk.Method, path, "", st, stdHeaders(), errBody(code, "")) == nil {
					passed++
				}
			}
			allowed := 1
			if st == http.StatusConflict {
				allowed = 2 // register: already_exists or state_invalid
			}
			if passed < 1 || passed > allowed {
				t.Errorf("%s %s %s admits %d codes", rk.Method, rk.Path, status, passed)
			}
		}
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors) > 0
}

func TestValidateResponseReportsThroughTB(t *testing.T) {
	d := contracttest.Load(t)
	tests := []struct {
		name       string
		status     int
		body       []byte
		wantFailed bool
	}{
		{"valid 200", 200, artifact(nil), false},
		{"valid 404", 404, errBody("app_artifact_not_found", ""), false},
		{"extra field", 200, artifact(func(m map[string]any) { m["extra"] = true }), true},
		{"undeclared status", 202, artifact(nil), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			d.ValidateResponse(r, http.MethodGet, projBase+"/"+artifactID, "", tc.status, stdHeaders(), tc.body)
			if got := r.Failed(); got != tc.wantFailed {
				t.Errorf("failed = %v (%q), want %v", got, r.errors, tc.wantFailed)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	d := contracttest.Load(t)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 20 {
				body := artifact(func(m map[string]any) { m["revision"] = i*100 + j + 1 })
				d.ValidateResponse(t, "GET", projBase+"/"+artifactID, "", 200, stdHeaders(), body)
				d.ValidateResponse(t, "POST", projBase+"/publish-intents", "", 201, stdHeaders(), intent(nil))
				d.ValidateResponse(t, "POST", projBase+"/"+artifactID+"/promote", "", 409, stdHeaders(),
					errBody("app_artifact_state_invalid", "channel_requires_verified_trust"))
				if err := d.Check("GET", projBase+"/"+artifactID, "", 200, stdHeaders(),
					artifact(func(m map[string]any) { m["extra"] = 1 })); err == nil {
					t.Error("extra field passed")
				}
			}
		})
	}
	wg.Wait()
}
