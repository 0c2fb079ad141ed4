package obs_test

import (
	"testing"

	"github.com/gpuaas/app-artifacts/shared/obs"
)

func TestTraceID(t *testing.T) {
	t.Setenv("_X_AMZN_TRACE_ID", "")
	for _, c := range []struct {
		name    string
		headers map[string]string
		env     string
		want    string
	}{
		{"x-ray header", map[string]string{"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}, "", "1-5759e988-bd862e3fe1be46a994272793"},
		{"lambda environment", nil, "Root=1-aaaa-bbbb;Parent=cc;Sampled=0", "1-aaaa-bbbb"},
		{"traceparent", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"nothing", nil, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("_X_AMZN_TRACE_ID", c.env)
			if got := obs.TraceID(func(k string) string { return c.headers[k] }); got != c.want {
				t.Fatalf("got %q want %q", got, c.want)
			}
		})
	}
}
