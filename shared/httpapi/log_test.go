package httpapi_test

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOneLogLinePerRequest checks the fields SPEC section 9 names, so the
// runbook's query by correlation_id finds every request.
func TestOneLogLinePerRequest(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	r := e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"nope"}`,
		headers: map[string]string{"x-correlation-id": "runbook-check-1"}})
	if r.status != 400 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var line map[string]any
	n := 0
	for _, l := range e.logs.lines() {
		if l["correlation_id"] == "runbook-check-1" {
			line, n = l, n+1
		}
	}
	if n != 1 {
		t.Fatalf("%d log lines for the request", n)
	}
	got := map[string]any{}
	for _, k := range []string{"service", "level", "msg", "correlation_id", "trace_id", "request_id", "function", "method", "route", "status", "error_code", "project_id", "artifact_id", "principal_id", "dynamodb_calls"} {
		got[k] = line[k]
	}
	want := map[string]any{
		"service": "gpuaas-api", "level": "WARN", "msg": "request", "correlation_id": "runbook-check-1",
		"trace_id": "1-67500000-0123456789abcdef01234567", "request_id": "JKJaXmPLvHcESHA=", "function": "promote-artifact",
		"method": "POST", "route": "POST /api/v1/projects/{project_id}/app-artifacts/{artifact_id}/promote", "status": float64(400),
		"error_code": "invalid_request", "project_id": projectA, "artifact_id": id, "principal_id": "dev-" + projectA,
		"dynamodb_calls": float64(1),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("log line (-want +got):\n%s", diff)
	}
	if _, ok := line["latency_ms"].(float64); !ok {
		t.Fatalf("latency_ms missing: %v", line)
	}
	emf, _ := line["_aws"].(map[string]any)
	if emf == nil || emf["CloudWatchMetrics"] == nil {
		t.Fatalf("no Embedded Metric Format block: %v", line)
	}
	var keys []string
	for k := range line {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("log line keys: %v", keys)
}
