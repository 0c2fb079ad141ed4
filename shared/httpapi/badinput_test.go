package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// with returns the register body with field set (or removed when v is nil).
func with(field string, v any) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(registerBody(projectA, "bad-app", "1.0.0", digest(31337))), &m)
	if v == nil {
		delete(m, field)
	} else {
		m[field] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	good := registerBody(projectA, "bad-app", "1.0.0", digest(31337))
	reg := func(body string) req { return req{route: "register-artifact", as: dev(projectA), body: body} }
	cases := []struct {
		name   string
		r      req
		status int
		code   string
		reason string
	}{
		{"slug uppercase", reg(with("app_slug", "Bad-App")), 400, "invalid_request", "invalid_field"},
		{"slug too short", reg(with("app_slug", "a")), 400, "invalid_request", "invalid_field"},
		{"slug ending in a hyphen", reg(with("app_slug", "bad-app-")), 400, "invalid_request", "invalid_field"},
		{"version not a tag", reg(with("app_version", "-1.0")), 400, "invalid_request", "invalid_field"},
		{"version too long", reg(with("app_version", strings.Repeat("v", 129))), 400, "invalid_request", "invalid_field"},
		{"unknown kind", reg(with("artifact_kind", "vm_image")), 400, "invalid_request", "invalid_field"},
		{"unknown source type", reg(with("source_type", "upload")), 400, "invalid_request", "invalid_field"},
		{"bad media type", reg(with("media_type", "text/plain")), 400, "invalid_request", "invalid_field"},
		{"uppercase digest", reg(with("digest", "sha256:"+strings.Repeat("A", 64))), 400, "invalid_request", "invalid_field"},
		{"short digest", reg(with("digest", "sha256:abc123")), 400, "invalid_request", "invalid_field"},
		{"digest without algorithm", reg(with("digest", strings.Repeat("a", 64))), 400, "invalid_request", "invalid_field"},
		{"algorithm mismatch", reg(with("digest_algorithm", "sha512")), 400, "invalid_request", "digest_algorithm_mismatch"},
		{"unknown algorithm", reg(with("digest_algorithm", "md5")), 400, "invalid_request", "invalid_field"},
		{"repository of another project", reg(with("repository", registryHost+"/gpuaas/"+orgA+"/"+projectB+"/bad-app")), 400, "invalid_request", "repository_not_in_project_namespace"},
		{"repository of another org", reg(with("repository", registryHost+"/gpuaas/"+orgB+"/"+projectA+"/bad-app")), 400, "invalid_request", "repository_not_in_project_namespace"},
		{"repository on another registry", reg(with("repository", "evil.example/gpuaas/"+orgA+"/"+projectA+"/bad-app")), 400, "invalid_request", "invalid_field"},
		{"pull-through into the platform namespace", reg(strings.Replace(with("repository", registryHost+"/gpuaas/"+orgA+"/"+projectB+"/x"), "platform_push", "pull_through_cache", 1)), 400, "invalid_request", "repository_not_in_project_namespace"},
		{"pull-through outside its namespace", reg(strings.Replace(with("repository", registryHost+"/docker-hub/library/nginx"), "platform_push", "pull_through_cache", 1)), 400, "invalid_request", "repository_not_in_project_namespace"},
		{"missing digest", reg(with("digest", nil)), 400, "invalid_request", "missing_field"},
		{"number for a string", reg(with("app_version", 1)), 400, "invalid_request", "invalid_field"},
		{"unknown field", reg(with("color", "blue")), 400, "invalid_request", "unknown_field"},
		{"lifecycle_state", reg(with("lifecycle_state", "promoted")), 400, "invalid_request", "unknown_field"},
		{"trust_state", reg(with("trust_state", "verified")), 400, "invalid_request", "unknown_field"},
		{"artifact_id", reg(with("artifact_id", "art_x")), 400, "invalid_request", "unknown_field"},
		{"org_id", reg(with("org_id", orgB)), 400, "invalid_request", "unknown_field"},
		{"revision", reg(with("revision", 7)), 400, "invalid_request", "unknown_field"},
		{"case-variant name", reg(strings.Replace(good, `"app_slug"`, `"App_Slug"`, 1)), 400, "invalid_request", "unknown_field"},
		{"duplicate key", reg(strings.Replace(good, `{`, `{"app_slug":"other-app",`, 1)), 400, "invalid_request", "duplicate_field"},
		{"trailing data", reg(good + `{}`), 400, "invalid_request", "trailing_data"},
		{"trailing garbage", reg(good + `x`), 400, "invalid_request", "trailing_data"},
		{"not JSON", reg(`app_slug=x`), 400, "invalid_request", "malformed_json"},
		{"array", reg(`[` + good + `]`), 400, "invalid_request", "malformed_json"},
		{"truncated", reg(good[:len(good)-5]), 400, "invalid_request", "malformed_json"},
		{"empty body", req{route: "register-artifact", as: dev(projectA), noBody: true}, 400, "invalid_request", "malformed_json"},
		{"body over 64 KiB", reg(with("color", strings.Repeat("x", 64<<10))), 413, "invalid_request", "body_too_large"},
		{"base64 body over 64 KiB", req{route: "register-artifact", as: dev(projectA), b64: true, body: base64.StdEncoding.EncodeToString([]byte(with("color", strings.Repeat("x", 64<<10))))}, 413, "invalid_request", "body_too_large"},
		{"deeply nested", reg(`{"app_slug":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`), 400, "invalid_request", "invalid_field"},
		{"unknown publish intent", reg(with("publish_intent_id", "pi_01JNOSUCHINTENT0000000000")), 400, "invalid_request", "unknown_publish_intent"},
		{"missing X-Project-ID", req{route: "register-artifact", as: dev(projectA), body: good, headers: map[string]string{"x-project-id": ""}}, 400, "invalid_request", "missing_project_id"},
		{"mismatched X-Project-ID", req{route: "register-artifact", as: dev(projectA), body: good, headers: map[string]string{"x-project-id": projectB}}, 400, "invalid_request", "project_context_mismatch"},
		{"missing X-Idempotency-Key", req{route: "register-artifact", as: dev(projectA), body: good, headers: map[string]string{"x-idempotency-key": ""}}, 400, "invalid_request", "missing_idempotency_key"},
		{"short X-Idempotency-Key", req{route: "register-artifact", as: dev(projectA), body: good, idemKey: "short"}, 400, "invalid_request", "invalid_idempotency_key"},
		{"X-Idempotency-Key with a space", req{route: "register-artifact", as: dev(projectA), body: good, idemKey: "has a space"}, 400, "invalid_request", "invalid_idempotency_key"},
		{"invalid project in path", req{route: "register-artifact", as: dev("Proj_Upper"), project: "Proj_Upper", body: good}, 400, "invalid_request", "invalid_project_id"},
		{"unknown channel", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"canary"}`}, 400, "invalid_request", "unknown_channel"},
		{"missing channel", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{}`}, 400, "invalid_request", "missing_field"},
		{"developer into protected channel", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"production"}`}, 403, "insufficient_permissions", "protected_channel"},
		{"unverified into production", req{route: "promote-artifact", as: admin(projectA), artifact: id, body: `{"channel":"production"}`}, 409, "app_artifact_state_invalid", "channel_requires_verified_trust"},
		{"retire a published artifact", req{route: "retire-artifact", as: admin(projectA), artifact: id, noBody: true}, 409, "app_artifact_state_invalid", "lifecycle_transition_invalid"},
		{"reason too long", req{route: "deprecate-artifact", as: dev(projectA), artifact: id, body: `{"reason":"` + strings.Repeat("r", 1025) + `"}`}, 400, "invalid_request", "invalid_field"},
		{"unknown list parameter", req{route: "list-artifacts", as: viewer(projectA), query: map[string]string{"sort": "asc"}}, 400, "invalid_request", "invalid_query_parameter"},
		{"bad lifecycle filter", req{route: "list-artifacts", as: viewer(projectA), query: map[string]string{"lifecycle_state": "gone"}}, 400, "invalid_request", "invalid_query_parameter"},
		{"malformed artifact id", req{route: "get-artifact", as: viewer(projectA), artifact: "not~an~id"}, 404, "app_artifact_not_found", "artifact_not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.dump()
			r := e.do(c.r)
			if diff := cmp.Diff([]any{c.status, c.code, c.reason}, []any{r.status, r.errCode(), r.reason()}); diff != "" {
				t.Fatalf("(-want +got):\n%s\n%s", diff, r.body)
			}
			if after := e.dump(); after != before {
				t.Fatalf("the table changed")
			}
		})
	}

	t.Run("key reused with another body", func(t *testing.T) {
		first := e.do(req{route: "deprecate-artifact", as: dev(projectA), artifact: id, body: `{"reason":"one"}`, idemKey: "reuse-key-01"})
		if first.status != 200 {
			t.Fatalf("first: %d %s", first.status, first.body)
		}
		before := e.dump()
		for _, other := range []req{
			{route: "deprecate-artifact", as: dev(projectA), artifact: id, body: `{"reason":"two"}`, idemKey: "reuse-key-01"},
			{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`, idemKey: "reuse-key-01"},
			{route: "register-artifact", as: dev(projectA), body: good, idemKey: "reuse-key-01"},
		} {
			r := e.do(other)
			if diff := cmp.Diff([]any{422, "invalid_request", "idempotency_key_reused"}, []any{r.status, r.errCode(), r.reason()}); diff != "" {
				t.Fatalf("%s (-want +got):\n%s\n%s", other.route, diff, r.body)
			}
		}
		if after := e.dump(); after != before {
			t.Fatalf("the table changed")
		}
		// The same key of another principal is another scope.
		r := e.do(req{route: "register-artifact", as: admin(projectA), body: good, idemKey: "reuse-key-01"})
		if r.status != 201 {
			t.Fatalf("other principal, same key: %d %s", r.status, r.body)
		}
	})

	t.Run("a failed request stores nothing, so its retry runs again", func(t *testing.T) {
		dup := registerBody(projectA, "bad-app", "1.0.0", digest(31337)) // registered just above
		for range 2 {
			r := e.do(req{route: "register-artifact", as: dev(projectA), body: dup, idemKey: "retry-key-01"})
			if r.status != 409 || r.errCode() != "app_artifact_already_exists" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			details := r.json["error"].(map[string]any)["details"].(map[string]any)
			if details["existing_artifact_id"] == "" || details["existing_artifact_id"] == nil {
				t.Fatalf("details do not name the existing artifact: %v", details)
			}
		}
	})
}
