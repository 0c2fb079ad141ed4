package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/infra/local/registry"
	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

func devClient(t *testing.T, st *cloud.Stack) *client {
	return &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "alice", Org: "org-acme", ProjectRoles: []string{"proj-alpha:developer", "proj-beta:developer"}})}
}

func createIntent(t *testing.T, c *client, slug, version string) answer {
	t.Helper()
	a := c.call("POST", base+"/publish-intents", fmt.Sprintf(`{"app_slug":%q,"app_version":%q,"artifact_kind":"container_image","source_type":"platform_push"}`, slug, version), nil)
	if a.status != 201 {
		t.Fatalf("intent: %d %s", a.status, a.raw)
	}
	return a
}

// listed returns the artifacts of an app in proj-alpha.
func listed(t *testing.T, c *client, slug string) []any {
	t.Helper()
	a := c.call("GET", base+"?app_slug="+slug, "", nil)
	if a.status != 200 {
		t.Fatalf("list: %d %s", a.status, a.raw)
	}
	return a.body["items"].([]any)
}

func countAudit(t *testing.T, st *cloud.Stack, action string) int {
	t.Helper()
	return len(auditRows(t, st, action))
}

func TestPushRegistersAgainstTheOpenIntent(t *testing.T) {
	st := start(t, t.TempDir())
	defer st.Close()
	dev := devClient(t, st)
	intent := createIntent(t, dev, "vision-api", "2.0.0")
	if got := st.Registry.Repositories(); len(got) != 1 || got[0] != "gpuaas/org-acme/proj-alpha/vision-api" {
		t.Fatalf("the intent did not create its repository: %v", got)
	}
	pushed := time.Now()
	digest, mediaType := push(t, st, intent.body["repository_name"].(string), intent.body["tag"].(string))

	// The artifact appears published, then becomes verified, with no API call.
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" {
		if items := listed(t, dev, "vision-api"); len(items) == 1 {
			a := items[0].(map[string]any)
			if a["digest"] != digest || a["media_type"] != mediaType || a["publish_intent_id"] != intent.body["intent_id"] {
				t.Fatalf("registered wrongly: %v", a)
			}
			id = a["artifact_id"].(string)
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing registered 10 s after the push")
		}
		time.Sleep(10 * time.Millisecond)
	}
	registered := time.Since(pushed)
	waitTrust(t, dev, id, "verified")
	verified := time.Since(pushed)
	t.Logf("push to registered %v, push to verified %v", registered.Round(time.Millisecond), verified.Round(time.Millisecond))
	if verified > 10*time.Second {
		t.Fatalf("push to verified took %v, more than 10 s", verified)
	}

	got := dev.call("GET", base+"/publish-intents/"+intent.body["intent_id"].(string), "", nil)
	if got.status != 200 || got.body["status"] != "fulfilled" || got.body["artifact_id"] != id {
		t.Fatalf("intent after the push: %d %s", got.status, got.raw)
	}
	if err := st.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One register row, in the intent creator's name, saying it came from the push.
	rows := auditRows(t, st, "app_artifact.register")
	if len(rows) != 1 {
		t.Fatalf("%d register audit rows", len(rows))
	}
	row := rows[0]
	if row.Actor.PrincipalID != "alice" || row.ArtifactID != id || row.Details["via"] != "ecr_push" ||
		row.Details["event_id"] == nil || row.Details["event_id"] == "" || row.Details["publish_intent_id"] != intent.body["intent_id"] {
		t.Fatalf("register audit row: %+v", row)
	}
}

// pushAuditRow is what the push tests read of an audit row.
type pushAuditRow struct {
	Entity     string `dynamodbav:"entity"`
	Action     string `dynamodbav:"action"`
	ArtifactID string `dynamodbav:"artifact_id"`
	Actor      struct {
		PrincipalID string `dynamodbav:"principal_id"`
	} `dynamodbav:"actor"`
	Details map[string]any `dynamodbav:"details"`
}

// auditRows returns the table's audit rows of one action.
func auditRows(t *testing.T, st *cloud.Stack, action string) []pushAuditRow {
	t.Helper()
	out, err := st.Dynamo.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(cloud.LocalTableName)})
	if err != nil {
		t.Fatal(err)
	}
	var rows []pushAuditRow
	for _, it := range out.Items {
		var row pushAuditRow
		if err := attributevalueUnmarshal(it, &row); err != nil {
			t.Fatal(err)
		}
		if row.Entity == "audit" && row.Action == action {
			rows = append(rows, row)
		}
	}
	return rows
}

// TestPushOfAnAlreadyRegisteredDigest: the same image pushed under a second
// tag that has its own intent registers nothing new and is not an error (no
// dead letter, no retry); the second intent stays open.
func TestPushOfAnAlreadyRegisteredDigest(t *testing.T) {
	st := start(t, t.TempDir())
	defer st.Close()
	dev := devClient(t, st)
	first := createIntent(t, dev, "twice", "1.0.0")
	second := createIntent(t, dev, "twice", "1.0.1")
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"1.0.0", "1.0.1"} {
		ref, err := name.ParseReference(trimHTTP(st.RegistryURL)+"/"+first.body["repository_name"].(string)+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		if err := st.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if items := listed(t, dev, "twice"); len(items) != 1 {
		t.Fatalf("%d artifacts for one digest", len(items))
	}
	if n := countAudit(t, st, "app_artifact.register"); n != 1 {
		t.Fatalf("%d register audit rows", n)
	}
	if dl := st.Bus.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
	got := dev.call("GET", base+"/publish-intents/"+second.body["intent_id"].(string), "", nil)
	if got.status != 200 || got.body["status"] != "open" {
		t.Fatalf("second intent: %d %s", got.status, got.raw)
	}
}

func TestPushesThatRegisterNothing(t *testing.T) {
	st := start(t, t.TempDir())
	defer st.Close()
	dev := devClient(t, st)

	// No intent at all.
	push(t, st, "gpuaas/org-acme/proj-alpha/no-intent", "1.0.0")
	// An intent for proj-alpha, pushed to proj-beta's repository.
	createIntent(t, dev, "cross-app", "1.0.0")
	push(t, st, "gpuaas/org-acme/proj-beta/cross-app", "1.0.0")
	// An intent that expired: created 25 hours ago.
	old := &lifecycle.Service{
		Store: dynamo.New(st.Dynamo.Client(), cloud.LocalTableName), RegistryHost: trimHTTP(st.RegistryURL),
		Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }, NewID: app.NewID,
	}
	slug, version, kind, source := "late-app", "1.0.0", "container_image", "platform_push"
	r := &lifecycle.Request{Caller: lifecycle.Caller{
		Principal: artifact.Principal{PrincipalID: "alice", PrincipalType: artifact.PrincipalUser}, OrgID: "org-acme",
		Perms: map[artifact.Permission]bool{artifact.PermPublish: true}, CorrelationID: "late-intent"},
		ProjectID: "proj-alpha", IdemKey: "late-intent-key", Fingerprint: "late"}
	res, err := old.CreateIntent(context.Background(), r, &lifecycle.IntentInput{AppSlug: &slug, AppVersion: &version, Kind: &kind, SourceType: &source})
	if err != nil {
		t.Fatal(err)
	}
	var expired map[string]any
	_ = json.Unmarshal(res.Body, &expired)
	if got := dev.call("GET", base+"/publish-intents/"+expired["intent_id"].(string), "", nil); got.body["status"] != "expired" {
		t.Fatalf("a 25-hour-old intent reads as %v", got.body["status"])
	}
	push(t, st, "gpuaas/org-acme/proj-alpha/late-app", "1.0.0")

	if err := st.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, slug := range []string{"no-intent", "cross-app", "late-app"} {
		if items := listed(t, dev, slug); len(items) != 0 {
			t.Errorf("%s: a push registered %d artifacts", slug, len(items))
		}
	}
	beta := &client{t: t, base: st.APIURL, token: dev.token}
	if a := beta.call("GET", "/api/v1/projects/proj-beta/app-artifacts", "", map[string]string{"X-Project-ID": "proj-beta"}); a.status != 200 || len(a.body["items"].([]any)) != 0 {
		t.Errorf("proj-beta: %d %s", a.status, a.raw)
	}
	if n := countAudit(t, st, "app_artifact.register"); n != 0 {
		t.Fatalf("%d register audit rows", n)
	}
}

func TestSamePushEventThreeTimes(t *testing.T) {
	st := start(t, t.TempDir())
	defer st.Close()
	dev := devClient(t, st)
	intent := createIntent(t, dev, "triple", "3.0.0")
	digest, _ := push(t, st, intent.body["repository_name"].(string), "3.0.0")
	if err := st.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The same push announced again, twice, as an at-least-once bus may.
	detail, _ := json.Marshal(map[string]string{"result": "SUCCESS", "repository-name": intent.body["repository_name"].(string),
		"image-digest": digest, "action-type": "PUSH", "image-tag": "3.0.0"})
	for range 2 {
		st.Bus.Put(context.Background(), []bus.Entry{{Source: "aws.ecr", DetailType: "ECR Image Action", Detail: string(detail)}})
	}
	if err := st.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if items := listed(t, dev, "triple"); len(items) != 1 {
		t.Fatalf("%d artifacts", len(items))
	}
	if n := countAudit(t, st, "app_artifact.register"); n != 1 {
		t.Fatalf("%d register audit rows", n)
	}
	if dl := st.Bus.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

func TestIntentWhenTheRegistryFails(t *testing.T) {
	st := start(t, t.TempDir())
	defer st.Close()
	dev := devClient(t, st)
	before := tableDump(t, st)
	st.Registry.FailECR("CreateRepository", registry.ErrServer)
	body := `{"app_slug":"flaky","app_version":"1.0.0","artifact_kind":"container_image","source_type":"platform_push"}`
	hdr := map[string]string{"X-Idempotency-Key": "intent-retry-0001"}
	a := dev.call("POST", base+"/publish-intents", body, hdr)
	if a.status != 502 || a.body["error"].(map[string]any)["code"] != "upstream_error" {
		t.Fatalf("registry down: %d %s", a.status, a.raw)
	}
	if tableDump(t, st) != before {
		t.Fatal("a failed intent stored something")
	}
	st.Registry.FailECR("CreateRepository", nil)
	a = dev.call("POST", base+"/publish-intents", body, hdr)
	if a.status != 201 {
		t.Fatalf("retry with the same key: %d %s", a.status, a.raw)
	}
	again := dev.call("POST", base+"/publish-intents", body, hdr)
	if again.status != 201 || again.raw != a.raw || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("second retry: %d %s", again.status, again.raw)
	}
	if n := countAudit(t, st, "app_artifact.publish_intent"); n != 1 {
		t.Fatalf("%d intent audit rows", n)
	}

	// The registry down again: the same request still replays (nothing to
	// prepare), and requests that cannot succeed reach the registry not at
	// all, so they create no repository, even once it is back.
	st.Registry.FailECR("CreateRepository", registry.ErrServer)
	during := dev.call("POST", base+"/publish-intents", body, hdr)
	if during.status != 201 || during.raw != a.raw || during.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay while the registry is down: %d %s", during.status, during.raw)
	}
	st.Registry.FailECR("CreateRepository", nil)
	reposBefore := st.Registry.Repositories()
	reused := dev.call("POST", base+"/publish-intents", `{"app_slug":"other-app","app_version":"1.0.0","artifact_kind":"container_image","source_type":"platform_push"}`, hdr)
	if reused.status != 422 || reused.body["error"].(map[string]any)["details"].(map[string]any)["reason"] != "idempotency_key_reused" {
		t.Fatalf("key reused with another body: %d %s", reused.status, reused.raw)
	}
	evil := &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "mallory", Org: "org-evil", ProjectRoles: []string{"proj-alpha:admin"}})}
	foreign := evil.call("POST", base+"/publish-intents", `{"app_slug":"evil-app","app_version":"1.0.0","artifact_kind":"container_image","source_type":"platform_push"}`, nil)
	if foreign.status != 403 || foreign.body["error"].(map[string]any)["details"].(map[string]any)["reason"] != "org_mismatch" {
		t.Fatalf("another org's token: %d %s", foreign.status, foreign.raw)
	}
	if got := st.Registry.Repositories(); fmt.Sprint(got) != fmt.Sprint(reposBefore) {
		t.Fatalf("refused requests created repositories: %v, before %v", got, reposBefore)
	}
}
