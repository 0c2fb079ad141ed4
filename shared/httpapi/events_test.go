package httpapi_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/httpapi"
)

// TestSampleEventsRoundTrip holds events/*.json to the aws-lambda-go type:
// every field is one API Gateway sends, and one exists per route.
func TestSampleEventsRoundTrip(t *testing.T) {
	for _, rt := range httpapi.Routes {
		t.Run(rt.Name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(repoRoot(t), "events", rt.Name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			var ev events.APIGatewayV2HTTPRequest
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("not an APIGatewayV2HTTPRequest: %v", err)
			}
			if ev.Version != "2.0" || ev.RouteKey != rt.Key() || ev.RequestContext.RouteKey != rt.Key() {
				t.Fatalf("route key %q, want %q", ev.RouteKey, rt.Key())
			}
			again, _ := json.Marshal(ev)
			var back events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(again, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ev, back); diff != "" {
				t.Fatalf("round trip changed the event (-file +again):\n%s", diff)
			}
		})
	}
}
