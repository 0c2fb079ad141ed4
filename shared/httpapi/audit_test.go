package httpapi_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuditEventRoutes(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	other := e.register(projectA)
	e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`, headers: map[string]string{"x-correlation-id": "runbook-cid-1"}})
	e.do(req{route: "deprecate-artifact", as: dev(projectA), artifact: id, body: `{"reason":"old"}`})

	actions := func(r resp) []string {
		var out []string
		for _, it := range r.json["items"].([]any) {
			out = append(out, it.(map[string]any)["action"].(string))
		}
		return out
	}
	cases := []struct {
		name  string
		r     req
		want  []string
		calls int
	}{
		{"artifact history, newest first", req{route: "list-artifact-audit-events", as: admin(projectA), artifact: id},
			[]string{"app_artifact.deprecate", "app_artifact.promote", "app_artifact.register"}, 2},
		{"artifact history by action", req{route: "list-artifact-audit-events", as: platform("operator"), artifact: id, query: map[string]string{"action": "app_artifact.promote"}},
			[]string{"app_artifact.promote"}, 2},
		{"by correlation id", req{route: "list-audit-events", as: platform("trust_admin"), query: map[string]string{"correlation_id": "runbook-cid-1"}},
			[]string{"app_artifact.promote"}, 2},
		{"by artifact", req{route: "list-audit-events", as: admin(projectA), query: map[string]string{"artifact_id": other}},
			[]string{"app_artifact.register"}, 2},
		{"by action", req{route: "list-audit-events", as: admin(projectA), query: map[string]string{"action": "app_artifact.register"}},
			[]string{"app_artifact.register", "app_artifact.register"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.r)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if diff := cmp.Diff(c.want, actions(r)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if n := e.lastCalls(); n != c.calls {
				t.Errorf("%d round trips, want %d", n, c.calls)
			}
		})
	}

	// Pages of one row follow each other to the end.
	var seen []string
	q := map[string]string{"limit": "1"}
	for range 10 {
		r := e.do(req{route: "list-audit-events", as: admin(projectA), query: q})
		seen = append(seen, actions(r)...)
		next, _ := r.json["next_cursor"].(string)
		if next == "" {
			break
		}
		q = map[string]string{"limit": "1", "cursor": next}
	}
	if len(seen) != 4 {
		t.Fatalf("paged through %d rows, want 4: %v", len(seen), seen)
	}
	for name, r := range map[string]req{
		"developer":         {route: "list-audit-events", as: dev(projectA)},
		"foreign org":       {route: "list-audit-events", as: foreign(projectA, "admin")},
		"bad action":        {route: "list-audit-events", as: admin(projectA), query: map[string]string{"action": "delete"}},
		"unknown parameter": {route: "list-artifact-audit-events", as: admin(projectA), artifact: id, query: map[string]string{"correlation_id": "x"}},
		"missing artifact":  {route: "list-artifact-audit-events", as: admin(projectA), artifact: "art_01JNOSUCH000000000000000000"},
	} {
		got := e.do(r)
		want := map[string]int{"developer": 403, "foreign org": 403, "bad action": 400, "unknown parameter": 400, "missing artifact": 404}[name]
		if got.status != want {
			t.Errorf("%s: %d %s, want %d", name, got.status, got.body, want)
		}
	}
}
