package registrar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/registrar"
)

// manifests is the registry as the registrar sees it (the ECR adapter's
// narrow interface), answering a media type or a fault per digest. The ECR
// API itself is exercised with a real registry in infra/local/cloud.
type manifests struct {
	mu     sync.Mutex
	media  map[string]string
	errs   map[string]error
	called int
}

func (m *manifests) ImageManifest(_ context.Context, _, digest string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.called++
	if err := m.errs[digest]; err != nil {
		return nil, "", err
	}
	return []byte("{}"), m.media[digest], nil
}

const (
	org     = "org-acme"
	project = "proj-alpha"
	host    = "registry.example.internal"
)

func digest(n byte) string { return "sha256:" + strings.Repeat(string("0123456789abcdef"[n%16]), 64) }

func pushEvent(id, repo, tag, dig string) events.ECRImageActionEvent {
	return events.ECRImageActionEvent{ID: id, Source: "aws.ecr", DetailType: "ECR Image Action",
		Detail: events.ECRImageActionEventDetailType{ActionType: "PUSH", Result: "SUCCESS", RepositoryName: repo, ImageTag: tag, ImageDigest: dig}}
}

// TestEveryOutcomeIsLoggedWithItsReasonAndCounted: each push ends in one JSON
// line naming its outcome (and, for a refused one, the refusal's reason)
// with an embedded-metric count; only a transient registry failure returns
// an error (so the rule retries it), and only an open intent registers.
func TestEveryOutcomeIsLoggedWithItsReasonAndCounted(t *testing.T) {
	srv := ddbtest.Start(t)
	table := srv.NewTable(t)
	now := time.Now()
	svc := func(at time.Time) *lifecycle.Service {
		return &lifecycle.Service{Store: dynamo.New(srv.Client(), table), RegistryHost: host,
			Now: func() time.Time { return at }, NewID: app.NewID}
	}
	intent := func(s *lifecycle.Service, slug, version string) string {
		kind, source := "container_image", "platform_push"
		r := &lifecycle.Request{Caller: lifecycle.Caller{
			Principal: artifact.Principal{PrincipalID: "alice", PrincipalType: artifact.PrincipalUser}, OrgID: org,
			Perms: map[artifact.Permission]bool{artifact.PermPublish: true}, CorrelationID: "cid-" + slug},
			ProjectID: project, IdemKey: "intent-key-" + slug, Fingerprint: slug}
		res, err := s.CreateIntent(context.Background(), r, &lifecycle.IntentInput{AppSlug: &slug, AppVersion: &version, Kind: &kind, SourceType: &source})
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.Unmarshal(res.Body, &body)
		return body["repository_name"].(string)
	}
	open := intent(svc(now), "open-app", "1.0.0")
	weird := intent(svc(now), "weird-app", "1.0.0")
	late := intent(svc(now.Add(-25*time.Hour)), "late-app", "1.0.0")

	m := &manifests{
		media: map[string]string{digest(1): "application/vnd.oci.image.manifest.v1+json",
			digest(2): "application/vnd.docker.distribution.manifest.v1+prettyjws", digest(3): "application/vnd.oci.image.manifest.v1+json"},
		errs: map[string]error{digest(4): ecr.ErrNotFound, digest(5): errors.New("ecr: BatchGetImage: transient: throttled")},
	}
	var logs bytes.Buffer
	g := &registrar.Registrar{Service: svc(now), Manifests: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: time.Now}

	notPush := pushEvent("ev-delete", open, "1.0.0", digest(1))
	notPush.Detail.ActionType = "DELETE"
	for _, c := range []struct {
		name    string
		ev      events.ECRImageActionEvent
		outcome string
		reason  string
		err     bool
	}{
		{"not a push", notPush, "ignored", "", false},
		{"outside gpuaas/", pushEvent("ev-other", "library/nginx", "1.0.0", digest(1)), "ignored", "", false},
		{"no intent for the tag", pushEvent("ev-no-intent", open, "9.9.9", digest(1)), lifecycle.PushNoIntent, "", false},
		{"expired intent", pushEvent("ev-late", late, "1.0.0", digest(3)), lifecycle.PushIntentExpired, "", false},
		{"media type not accepted", pushEvent("ev-weird", weird, "1.0.0", digest(2)), lifecycle.PushRejected, "invalid_field", false},
		{"image deleted since", pushEvent("ev-gone", open, "1.0.0", digest(4)), "image_gone", "", false},
		{"registry throttled", pushEvent("ev-throttled", open, "1.0.0", digest(5)), "", "", true},
		{"open intent", pushEvent("ev-open", open, "1.0.0", digest(1)), lifecycle.PushRegistered, "", false},
		{"same push again", pushEvent("ev-open-again", open, "1.0.0", digest(1)), lifecycle.PushReplayed, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs.Reset()
			err := g.Handle(context.Background(), c.ev)
			if (err != nil) != c.err {
				t.Fatalf("Handle error %v, want error %v", err, c.err)
			}
			var line map[string]any
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("want one JSON line, got %q", logs.String())
			}
			if line["outcome"] != c.outcome && !c.err {
				t.Fatalf("outcome %v, want %q: %s", line["outcome"], c.outcome, logs.String())
			}
			if got, _ := line["reason"].(string); got != c.reason {
				t.Fatalf("reason %q, want %q: %s", got, c.reason, logs.String())
			}
			if line["pushes"] != float64(1) || line["_aws"] == nil {
				t.Fatalf("no embedded-metric count: %s", logs.String())
			}
			if c.err && line["level"] != "ERROR" {
				t.Fatalf("a transient failure is logged at %v", line["level"])
			}
			registered := c.outcome == lifecycle.PushRegistered || c.outcome == lifecycle.PushReplayed
			if id, _ := line["artifact_id"].(string); registered != (id != "") {
				t.Fatalf("artifact_id %q for outcome %q", id, c.outcome)
			}
		})
	}
	if n := len(srv.Items(t, table, "artifact")); n != 1 {
		t.Fatalf("%d artifacts registered, want the one open intent's", n)
	}
	if n := len(srv.Items(t, table, "audit")); n != 4 {
		// three intents and one register
		t.Fatalf("%d audit rows, want 4", n)
	}
}

// TestConcurrentDuplicatePushes: the bus delivers one push 16 times at once;
// exactly one delivery registers, the rest see the push already registered
// by itself, and one artifact and one register audit row result.
func TestConcurrentDuplicatePushes(t *testing.T) {
	srv := ddbtest.Start(t)
	table := srv.NewTable(t)
	s := &lifecycle.Service{Store: dynamo.New(srv.Client(), table), RegistryHost: host, Now: time.Now, NewID: app.NewID}
	slug, version, kind, source := "storm-app", "2.0.0", "container_image", "platform_push"
	r := &lifecycle.Request{Caller: lifecycle.Caller{
		Principal: artifact.Principal{PrincipalID: "alice", PrincipalType: artifact.PrincipalUser}, OrgID: org,
		Perms: map[artifact.Permission]bool{artifact.PermPublish: true}, CorrelationID: "cid-storm"},
		ProjectID: project, IdemKey: "intent-key-storm", Fingerprint: slug}
	res, err := s.CreateIntent(context.Background(), r, &lifecycle.IntentInput{AppSlug: &slug, AppVersion: &version, Kind: &kind, SourceType: &source})
	if err != nil {
		t.Fatal(err)
	}
	var intent map[string]any
	_ = json.Unmarshal(res.Body, &intent)
	repo := intent["repository_name"].(string)
	m := &manifests{media: map[string]string{digest(7): "application/vnd.oci.image.manifest.v1+json"}}
	var logs syncBuffer
	g := &registrar.Registrar{Service: s, Manifests: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: time.Now}

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- g.Handle(context.Background(), pushEvent(fmt.Sprintf("ev-storm-%02d", i), repo, version, digest(7)))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a duplicate delivery failed: %v", err)
		}
	}
	outcomes := map[string]int{}
	ids := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		outcomes[line["outcome"].(string)]++
		ids[line["artifact_id"].(string)] = true
	}
	if outcomes[lifecycle.PushRegistered] != 1 || outcomes[lifecycle.PushReplayed] != n-1 || len(ids) != 1 {
		t.Fatalf("outcomes %v over artifacts %v, want 1 registered and %d replays of one artifact", outcomes, ids, n-1)
	}
	if got := len(srv.Items(t, table, "artifact")); got != 1 {
		t.Fatalf("%d artifacts", got)
	}
	regs := 0
	for _, it := range srv.Items(t, table, "audit") {
		if a, ok := it["action"].(*types.AttributeValueMemberS); ok && a.Value == "app_artifact.register" {
			regs++
		}
	}
	if regs != 1 {
		t.Fatalf("%d register audit rows", regs)
	}
	t.Logf("%d concurrent deliveries of one push: %v", n, outcomes)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
