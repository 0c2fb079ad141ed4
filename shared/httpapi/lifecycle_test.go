package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLifecycleEndToEnd(t *testing.T) {
	e := newEnv(t)
	intent := e.do(req{route: "create-publish-intent", as: dev(projectA),
		body: `{"app_slug":"vision-api","app_version":"2.0.0","artifact_kind":"container_image","source_type":"platform_push"}`})
	if intent.status != 201 {
		t.Fatalf("intent: %d %s", intent.status, intent.body)
	}
	wantRepo := registryHost + "/gpuaas/" + orgA + "/" + projectA + "/vision-api"
	if diff := cmp.Diff([]string{"open", wantRepo, "gpuaas/org-acme/proj-alpha/vision-api", "2.0.0"},
		[]string{intent.str("status"), intent.str("repository"), intent.str("repository_name"), intent.str("tag")}); diff != "" {
		t.Fatalf("intent (-want +got):\n%s", diff)
	}

	var body map[string]string
	_ = json.Unmarshal([]byte(registerBody(projectA, "vision-api", "2.0.0", digest(900001))), &body)
	body["publish_intent_id"] = intent.str("intent_id")
	b, _ := json.Marshal(body)
	reg := e.do(req{route: "register-artifact", as: dev(projectA), body: string(b)})
	if reg.status != 201 {
		t.Fatalf("register: %d %s", reg.status, reg.body)
	}
	id := reg.str("artifact_id")
	if diff := cmp.Diff([]any{"published", "unverified", []any{}, float64(1), intent.str("intent_id")},
		[]any{reg.json["lifecycle_state"], reg.json["trust_state"], reg.json["channels"], reg.json["revision"], reg.json["publish_intent_id"]}); diff != "" {
		t.Fatalf("registered (-want +got):\n%s", diff)
	}

	// The fulfilled intent cannot register a second artifact.
	body["digest"], body["app_version"] = digest(900002), "2.0.0"
	b, _ = json.Marshal(body)
	again := e.do(req{route: "register-artifact", as: dev(projectA), body: string(b)})
	if again.status != 409 || again.errCode() != "app_artifact_already_exists" {
		t.Fatalf("second register on the same version: %d %s", again.status, again.body)
	}

	got := e.do(req{route: "get-artifact", as: viewer(projectA), artifact: id})
	if got.status != 200 || got.body != reg.body {
		t.Fatalf("get: %d %s\nwant %s", got.status, got.body, reg.body)
	}

	steps := []struct {
		route, body, lifecycle string
		as                     who
		channels               []any
		revision               float64
	}{
		{"promote-artifact", `{"channel":"dev"}`, "promoted", dev(projectA), []any{"dev"}, 2},
		{"promote-artifact", `{"channel":"staging"}`, "promoted", dev(projectA), []any{"dev", "staging"}, 3},
		{"promote-artifact", `{"channel":"staging"}`, "promoted", dev(projectA), []any{"dev", "staging"}, 3}, // no-op
		{"deprecate-artifact", `{"reason":"superseded"}`, "deprecated", dev(projectA), []any{"dev", "staging"}, 4},
		{"retire-artifact", ``, "retired", admin(projectA), []any{}, 5},
	}
	for i, s := range steps {
		r := e.do(req{route: s.route, as: s.as, artifact: id, body: s.body, noBody: s.body == ""})
		if r.status != 200 {
			t.Fatalf("step %d %s: %d %s", i, s.route, r.status, r.body)
		}
		if diff := cmp.Diff([]any{s.lifecycle, s.channels, s.revision}, []any{r.json["lifecycle_state"], r.json["channels"], r.json["revision"]}); diff != "" {
			t.Fatalf("step %d %s (-want +got):\n%s", i, s.route, diff)
		}
	}
	// Retired is final.
	for _, route := range []string{"promote-artifact", "deprecate-artifact", "retire-artifact"} {
		r := e.do(req{route: route, as: admin(projectA), artifact: id, body: `{"channel":"dev"}`})
		if route != "promote-artifact" {
			r = e.do(req{route: route, as: admin(projectA), artifact: id, noBody: true})
		}
		if r.status != 409 || r.errCode() != "app_artifact_state_invalid" || r.reason() != "lifecycle_transition_invalid" {
			t.Fatalf("%s on retired: %d %s", route, r.status, r.body)
		}
	}

	// One audit row per state change, all with their request's correlation id.
	actions := map[string]int{}
	for _, a := range e.audits() {
		actions[auditString(a, "action")]++
		if auditString(a, "correlation_id") == "" || auditString(a, "idempotency_key") == "" {
			t.Errorf("audit row lacks correlation or idempotency key: %v", a)
		}
	}
	want := map[string]int{"app_artifact.publish_intent": 1, "app_artifact.register": 1, "app_artifact.promote": 2, "app_artifact.deprecate": 1, "app_artifact.retire": 1}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Fatalf("audit actions (-want +got):\n%s", diff)
	}

	list := e.do(req{route: "list-artifacts", as: viewer(projectA)})
	items, _ := list.json["items"].([]any)
	if list.status != 200 || len(items) != 1 {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
}

func TestDynamoDBRoundTrips(t *testing.T) {
	e := newEnv(t)
	intentID := e.intent(projectA)
	other, failed := e.register(projectA), e.register(projectA)
	e.setTrust(projectA, failed, "failed_verification")
	id := e.register(projectA)
	if n := e.lastCalls(); n != 1 {
		t.Errorf("register: %d round trips, want 1", n)
	}
	cases := []struct {
		name string
		r    req
		want int
	}{
		// An intent reads its project and idempotency record before it may
		// touch the registry, then writes: 2; its replay reads only: 1.
		{"create-publish-intent", req{route: "create-publish-intent", as: dev(projectA), body: `{"app_slug":"x-app","app_version":"1","artifact_kind":"helm_chart","source_type":"platform_push"}`, idemKey: "intent-key-1"}, 2},
		{"create-publish-intent replay", req{route: "create-publish-intent", as: dev(projectA), body: `{"app_slug":"x-app","app_version":"1","artifact_kind":"helm_chart","source_type":"platform_push"}`, idemKey: "intent-key-1"}, 1},
		{"get-artifact", req{route: "get-artifact", as: viewer(projectA), artifact: id}, 1},
		{"list-artifacts", req{route: "list-artifacts", as: viewer(projectA)}, 1},
		{"promote-artifact", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`, idemKey: "promote-key-1"}, 2},
		{"promote replay", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`, idemKey: "promote-key-1"}, 1},
		{"promote no-op", req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`}, 2},
		{"deprecate-artifact", req{route: "deprecate-artifact", as: dev(projectA), artifact: id, noBody: true}, 2},
		{"retire-artifact", req{route: "retire-artifact", as: admin(projectA), artifact: id, noBody: true, idemKey: "retire-key-1"}, 2},
		{"retire replay", req{route: "retire-artifact", as: admin(projectA), artifact: id, noBody: true, idemKey: "retire-key-1"}, 1},
		{"register-artifact", req{route: "register-artifact", as: dev(projectA), body: registerBody(projectA, "rt-app", "1", digest(777001)), idemKey: "register-key-1"}, 1},
		{"register replay", req{route: "register-artifact", as: dev(projectA), body: registerBody(projectA, "rt-app", "1", digest(777001)), idemKey: "register-key-1"}, 1},
		{"get-publish-intent", req{route: "get-publish-intent", as: viewer(projectA), artifact: intentID}, 1},
		{"revoke-artifact", req{route: "revoke-artifact", as: trustAdmin(), artifact: other, body: `{"reason":"key leaked"}`, idemKey: "revoke-key-1"}, 2},
		{"revoke replay", req{route: "revoke-artifact", as: trustAdmin(), artifact: other, body: `{"reason":"key leaked"}`, idemKey: "revoke-key-1"}, 1},
		{"verify-artifact", req{route: "verify-artifact", as: trustAdmin(), artifact: failed, noBody: true}, 2},
		{"get-artifact-policy", req{route: "get-artifact-policy", as: admin(projectA)}, 1},
		{"put-artifact-policy", req{route: "put-artifact-policy", as: trustAdmin(), body: defaultPolicyBody, idemKey: "policy-key-1"}, 2},
		{"put-artifact-policy replay", req{route: "put-artifact-policy", as: trustAdmin(), body: defaultPolicyBody, idemKey: "policy-key-1"}, 1},
		// An artifact's history reads the artifact (404 for a foreign one) and then its rows.
		{"list-artifact-audit-events", req{route: "list-artifact-audit-events", as: admin(projectA), artifact: id}, 2},
		// The project's rows: the project item (org check, also for an empty page), then the rows.
		{"list-audit-events", req{route: "list-audit-events", as: admin(projectA)}, 2},
	}
	for _, c := range cases {
		r := e.do(c.r)
		if r.status >= 300 {
			t.Fatalf("%s: %d %s", c.name, r.status, r.body)
		}
		got := e.lastCalls()
		t.Logf("dynamodb_calls %-22s %d (status %d, replayed=%q)", c.name, got, r.status, r.headers["Idempotent-Replayed"])
		if got != c.want {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.want)
		}
	}
}

func auditString(item map[string]any2, k string) string { return attrS(item[k]) }

func TestListPagesFiltersAndCursor(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for range 7 {
		ids = append(ids, e.register(projectA))
	}
	e.register(projectB) // never listed in A
	slices.Reverse(ids)  // newest first
	var seen []string
	cursor := ""
	for page := 0; page < 10; page++ {
		q := map[string]string{"limit": "3"}
		if cursor != "" {
			q["cursor"] = cursor
		}
		r := e.do(req{route: "list-artifacts", as: viewer(projectA), query: q})
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		for _, it := range r.json["items"].([]any) {
			seen = append(seen, it.(map[string]any)["artifact_id"].(string))
		}
		next, _ := r.json["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(ids, seen); diff != "" {
		t.Fatalf("pages (-want +got):\n%s", diff)
	}

	// Filters.
	e.do(req{route: "promote-artifact", as: dev(projectA), artifact: ids[2], body: `{"channel":"staging"}`})
	for _, c := range []struct {
		q    map[string]string
		want []string
	}{
		{map[string]string{"channel": "staging"}, []string{ids[2]}},
		{map[string]string{"lifecycle_state": "promoted"}, []string{ids[2]}},
		{map[string]string{"lifecycle_state": "published", "limit": "2"}, ids[:2]},
		{map[string]string{"trust_state": "verified"}, []string{}},
		{map[string]string{"app_slug": "vision-api", "lifecycle_state": "promoted", "trust_state": "unverified"}, []string{ids[2]}},
	} {
		r := e.do(req{route: "list-artifacts", as: viewer(projectA), query: c.q})
		if r.status != 200 {
			t.Fatalf("filter %v: %d %s", c.q, r.status, r.body)
		}
		got := []string{}
		for _, it := range r.json["items"].([]any) {
			got = append(got, it.(map[string]any)["artifact_id"].(string))
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("filter %v (-want +got):\n%s", c.q, diff)
		}
	}

	// A cursor is tamper-evident and bound to its query and project.
	first := e.do(req{route: "list-artifacts", as: viewer(projectA), query: map[string]string{"limit": "2"}})
	cur := first.json["next_cursor"].(string)
	tampered := []byte(cur)
	tampered[3] ^= 1
	for name, q := range map[string]map[string]string{
		"modified":      {"cursor": string(tampered)},
		"garbage":       {"cursor": "not-a-cursor"},
		"other filters": {"cursor": cur, "lifecycle_state": "published"},
	} {
		r := e.do(req{route: "list-artifacts", as: viewer(projectA), query: q})
		if r.status != 400 || r.reason() != "invalid_cursor" {
			t.Errorf("%s cursor: %d %s", name, r.status, r.body)
		}
	}
	r := e.do(req{route: "list-artifacts", as: viewer(projectB), project: projectB, query: map[string]string{"cursor": cur}})
	if r.status != 400 || r.reason() != "invalid_cursor" {
		t.Errorf("cursor in another project: %d %s", r.status, r.body)
	}
	for _, l := range []string{"0", "101", "abc", "-1"} {
		r := e.do(req{route: "list-artifacts", as: viewer(projectA), query: map[string]string{"limit": l}})
		if r.status != 400 || r.reason() != "invalid_query_parameter" {
			t.Errorf("limit=%s: %d %s", l, r.status, r.body)
		}
	}
}

// TestSparseFilterKeepsItsCursor: one deprecated artifact under many newer
// ones. A filtered page reads a bounded number of items (one DynamoDB call)
// and may match none of them; it must still hand back a cursor, so that
// following cursors finds every match, one call per page. The filter itself
// must be one real DynamoDB accepts (no key attribute: ddbtest refuses one).
func TestSparseFilterKeepsItsCursor(t *testing.T) {
	e := newEnv(t)
	old := e.register(projectA)
	if r := e.do(req{route: "deprecate-artifact", as: dev(projectA), artifact: old, noBody: true}); r.status != 200 {
		t.Fatalf("deprecate: %d %s", r.status, r.body)
	}
	for range 20 {
		e.register(projectA)
	}
	for _, route := range []struct {
		name string
		q    map[string]string
		want string
	}{
		{"list-artifacts", map[string]string{"lifecycle_state": "deprecated", "limit": "1"}, old},
		{"list-audit-events", map[string]string{"action": "app_artifact.deprecate", "limit": "1"}, old},
	} {
		var found []string
		pages, empty := 0, 0
		cursor := ""
		for ; pages < 40; pages++ {
			q := maps.Clone(route.q)
			if cursor != "" {
				q["cursor"] = cursor
			}
			as := viewer(projectA)
			if route.name == "list-audit-events" {
				as = admin(projectA)
			}
			r := e.do(req{route: route.name, as: as, query: q})
			if r.status != 200 {
				t.Fatalf("%s page %d: %d %s", route.name, pages, r.status, r.body)
			}
			if n := e.lastCalls(); n != 1 && route.name == "list-artifacts" {
				t.Fatalf("%s page %d: %d DynamoDB calls, want 1", route.name, pages, n)
			}
			items := r.json["items"].([]any)
			if len(items) == 0 {
				empty++
			}
			for _, it := range items {
				found = append(found, it.(map[string]any)["artifact_id"].(string))
			}
			next, _ := r.json["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		if diff := cmp.Diff([]string{route.want}, found); diff != "" {
			t.Fatalf("%s: matches over %d pages (%d empty) (-want +got):\n%s", route.name, pages+1, empty, diff)
		}
		t.Logf("%s %v: the one match found over %d pages, %d of them empty", route.name, route.q, pages+1, empty)
	}
}

// TestIdempotencyRecordsExpireAfter24Hours: a key is bound to its first
// request for 24 hours (replay, or 422 for another request) and free again
// after, whether or not TTL has deleted the record (minidyn's never does):
// the expiry is in the write's condition.
func TestIdempotencyRecordsExpireAfter24Hours(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	var offset atomic.Int64
	e.svc.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	promote := func(channel string) resp {
		return e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: fmt.Sprintf(`{"channel":%q}`, channel), idemKey: "expiring-key-0001"})
	}
	first := promote("dev")
	if first.status != 200 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	for _, c := range []struct {
		at      time.Duration
		channel string
		status  int
		replay  string
		reason  string
	}{
		{23*time.Hour + 59*time.Minute, "dev", 200, "true", ""},                         // still replayed
		{23*time.Hour + 59*time.Minute, "staging", 422, "", "idempotency_key_reused"},   // still bound
		{24*time.Hour + time.Minute, "staging", 200, "", ""},                            // expired: runs as new
		{24*time.Hour + 2*time.Minute, "staging", 200, "true", ""},                      // and is bound anew
		{24*time.Hour + 2*time.Minute, "production", 422, "", "idempotency_key_reused"}, // to its new request
	} {
		offset.Store(int64(c.at))
		r := promote(c.channel)
		if r.status != c.status || r.headers["Idempotent-Replayed"] != c.replay || (c.reason != "" && r.reason() != c.reason) {
			t.Fatalf("at +%v promote %s: %d replayed=%q %s; want %d replayed=%q %s", c.at, c.channel, r.status, r.headers["Idempotent-Replayed"], r.body, c.status, c.replay, c.reason)
		}
	}
	got := e.do(req{route: "get-artifact", as: viewer(projectA), artifact: id})
	if got.json["revision"] != float64(3) || fmt.Sprint(got.json["channels"]) != "[dev staging]" {
		t.Fatalf("after expiry: %s", got.body)
	}
	if n := len(e.audits()); n != 3 { // register, promote dev, promote staging
		t.Fatalf("%d audit rows, want 3", n)
	}
}
