package cloud_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/infra/local/registry"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/publisher"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
	"github.com/gpuaas/app-artifacts/shared/signature/sigtest"
)

// The trust tests drive the real asynchronous path of the local cloud:
// register (API, DynamoDB transaction with its audit row) -> stream ->
// publisher -> PutEvents -> bus rule from template.yaml -> verifier ->
// ECR API (manifest) and OCI API (signatures) of the local registry ->
// verdict transaction. Nothing is faked; registry faults are injected with
// Registry.FailECR.

const (
	trustProject      = "proj-alpha"
	trustOrg          = "org-acme"
	trustVerifyAction = "app_artifact.verify"
	trustPolicyPath   = "/api/v1/projects/proj-alpha/app-artifact-policy"
	trustOCIManifest  = "application/vnd.oci.image.manifest.v1+json"
	trustDeadline     = 10 * time.Second
)

// trustClients are the callers the trust tests use.
type trustClients struct {
	dev, admin, trust *client
}

func trustCallers(t *testing.T, st *cloud.Stack) trustClients {
	t.Helper()
	return trustClients{
		dev:   &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "alice", Org: trustOrg, ProjectRoles: []string{"proj-alpha:developer"}})},
		admin: &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "root", Org: trustOrg, ProjectRoles: []string{"proj-alpha:admin"}})},
		trust: &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "trust-bot", Org: trustOrg, PlatformRoles: []string{"trust_admin"}, ServiceAccount: true})},
	}
}

// startTrust starts a fresh local cloud on fresh state and closes it at the end.
func startTrust(t *testing.T) (*cloud.Stack, trustClients) {
	t.Helper()
	return startTrustWith(t, nil)
}

// startTrustWith is startTrust with the stack's retry delays replaced.
func startTrustWith(t *testing.T, backoff func(int) time.Duration) (*cloud.Stack, trustClients) {
	t.Helper()
	repo, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := cloud.Start(cloud.Options{RepoRoot: repo, StateDir: t.TempDir(), APIAddr: "127.0.0.1:0", DynamoAddr: "127.0.0.1:0", Backoff: backoff})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Keep-alive connections this test's clients dialled and never used
		// would hold up the servers' shutdown.
		http.DefaultClient.CloseIdleConnections()
		if tr, ok := remote.DefaultTransport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
		err := st.Close()
		switch {
		case err != nil && trustOnlyDeadline(err):
			// Stack.Close waits at most 5 s for all three servers, and
			// http.Server.Shutdown waits for a connection that sent nothing
			// yet until it is 5 s old: a connection the stack's own clients
			// (verifier, publisher) dialled just before Close and did not
			// use makes Close take 5 s and fail. A local-cloud defect,
			// reported; not what these tests are about.
			t.Logf("close: %v (stack's own idle connections; see the report)", err)
		case err != nil:
			t.Errorf("close: %v", err)
		}
	})
	return st, trustCallers(t, st)
}

// trustOnlyDeadline reports whether every error joined in err is a
// context.DeadlineExceeded.
func trustOnlyDeadline(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil && !trustOnlyDeadline(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func trustRepo(slug string) string { return "gpuaas/" + trustOrg + "/" + trustProject + "/" + slug }

// trustRepoRef is repository repo of the stack's registry, as go-containerregistry reaches it.
func trustRepoRef(t *testing.T, st *cloud.Stack, repo string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(strings.TrimPrefix(st.RegistryURL, "http://")+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// trustPush pushes a random image to repo:tag and returns it with its descriptor.
func trustPush(t *testing.T, st *cloud.Stack, repo, tag string) (v1.Image, v1.Descriptor) {
	t.Helper()
	img := trustImage(t)
	if err := remote.Write(trustRepoRef(t, st, repo).Tag(tag), img); err != nil {
		t.Fatal(err)
	}
	return img, trustDescriptor(t, img)
}

func trustImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func trustDescriptor(t *testing.T, img v1.Image) v1.Descriptor {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}
}

// trustRegister registers digest as app_slug slug in repository repo (without
// the registry host) and returns the artifact id.
func trustRegister(t *testing.T, st *cloud.Stack, c *client, slug, version, repo, source, digest, mediaType string) string {
	t.Helper()
	a := c.call("POST", base, fmt.Sprintf(`{"app_slug":%q,"app_version":%q,"repository":%q,"digest":%q,"digest_algorithm":"sha256","artifact_kind":"container_image","source_type":%q,"media_type":%q}`,
		slug, version, strings.TrimPrefix(st.RegistryURL, "http://")+"/"+repo, digest, source, mediaType), nil)
	if a.status != 201 {
		t.Fatalf("register %s: %d %s", slug, a.status, a.raw)
	}
	return a.body["artifact_id"].(string)
}

// trustWaitReason waits for a verdict and checks it.
func trustWaitReason(t *testing.T, c *client, id, state, reason string) answer {
	t.Helper()
	a := waitTrust(t, c, id, state)
	got, _ := a.body["trust_reason"].(string)
	if got != reason {
		t.Fatalf("artifact %s: %s with trust_reason %q, want %q: %s", id, state, got, reason, a.raw)
	}
	return a
}

func trustChannels(names ...string) []map[string]any {
	var out []map[string]any
	for _, n := range names {
		ch := map[string]any{"name": n, "protected": false, "required_trust": []string{"unverified", "verified"}, "signature_required": false}
		if n == "production" {
			ch["protected"], ch["required_trust"] = true, []string{"verified"}
		}
		out = append(out, ch)
	}
	return out
}

// trustPutPolicy replaces the project's policy as the trust admin.
func trustPutPolicy(t *testing.T, c *client, policy map[string]any) answer {
	t.Helper()
	full := map[string]any{
		"channels": trustChannels("dev", "staging", "production"), "signature_required": false, "trusted_keys": []any{},
		"allowed_source_types": []string{"platform_push", "pull_through_cache"}, "pull_through_prefixes": []string{},
	}
	for k, v := range policy {
		full[k] = v
	}
	body, _ := json.Marshal(full)
	a := c.call("PUT", trustPolicyPath, string(body), map[string]string{
		"X-Idempotency-Key": fmt.Sprintf("policy-%d", time.Now().UnixNano()), "Content-Type": "application/json"})
	if a.status != 200 {
		t.Fatalf("PUT policy: %d %s", a.status, a.raw)
	}
	return a
}

// trustErrorReason is details.reason of an error envelope.
func trustErrorReason(a answer) (code, reason string) {
	e, _ := a.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	code, _ = e["code"].(string)
	reason, _ = d["reason"].(string)
	return code, reason
}

// trustAuditRow is one audit row as stored, with its stream image.
type trustAuditRow struct {
	*lifecycle.AuditEvent
	image map[string]events.DynamoDBAttributeValue
}

// trustAuditRows scans the table for audit rows (entity = "audit") of artifact
// id ("" for all), straight from DynamoDB.
func trustAuditRows(t *testing.T, st *cloud.Stack, id string) []trustAuditRow {
	t.Helper()
	var rows []trustAuditRow
	var start map[string]json.RawMessage
	for {
		in := map[string]any{
			"TableName": st.Dynamo.TableName, "ConsistentRead": true, "FilterExpression": "#e = :audit",
			"ExpressionAttributeNames": map[string]string{"#e": "entity"}, "ExpressionAttributeValues": map[string]any{":audit": map[string]string{"S": "audit"}},
		}
		if start != nil {
			in["ExclusiveStartKey"] = start
		}
		body, _ := json.Marshal(in)
		req, _ := http.NewRequest(http.MethodPost, st.Dynamo.URL, bytes.NewReader(body))
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Scan")
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("scan: %d %s", res.StatusCode, raw)
		}
		var out struct {
			Items            []map[string]events.DynamoDBAttributeValue
			LastEvaluatedKey map[string]json.RawMessage
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, img := range out.Items {
			ev, _, err := dynamo.DecodeAuditImage(img)
			if err != nil {
				t.Fatalf("audit row: %v", err)
			}
			if id == "" || (ev.ArtifactID != nil && *ev.ArtifactID == id) {
				rows = append(rows, trustAuditRow{AuditEvent: ev, image: img})
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return rows
		}
		start = out.LastEvaluatedKey
	}
}

// trustVerdicts are the verifier's app_artifact.verify rows (a trust admin's
// re-verification request is an app_artifact.verify row too, by its actor).
func trustVerdicts(rows []trustAuditRow) []trustAuditRow {
	var out []trustAuditRow
	for _, r := range rows {
		if r.Action == trustVerifyAction && r.Actor.PrincipalID == lifecycle.Verifier.PrincipalID {
			out = append(out, r)
		}
	}
	return out
}

func trustRowsOf(rows []trustAuditRow, action string) []trustAuditRow {
	var out []trustAuditRow
	for _, r := range rows {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

func trustDrain(t *testing.T, st *cloud.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), trustDeadline)
	defer cancel()
	if err := st.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// trustCaptureAPI records what the publisher would send, instead of sending it.
type trustCaptureAPI struct {
	mu      sync.Mutex
	entries []bus.Entry
}

func (c *trustCaptureAPI) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &eventbridge.PutEventsOutput{}
	for _, e := range in.Entries {
		c.entries = append(c.entries, bus.Entry{Source: aws.ToString(e.Source), DetailType: aws.ToString(e.DetailType),
			Detail: aws.ToString(e.Detail), EventBusName: aws.ToString(e.EventBusName), Resources: e.Resources})
		out.Entries = append(out.Entries, ebtypes.PutEventsResultEntry{EventId: aws.String(fmt.Sprintf("captured-%d", len(c.entries)))})
	}
	return out, nil
}

// trustStreamRecord is the stream's INSERT record of an audit row.
func trustStreamRecord(r trustAuditRow) events.DynamoDBEvent {
	return events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{{EventName: "INSERT", EventSource: "aws:dynamodb",
		Change: events.DynamoDBStreamRecord{NewImage: r.image, SequenceNumber: "1", StreamViewType: "NEW_IMAGE"}}}}
}

// trustEventOf is the bus entry the real publisher makes of an audit row: the
// same source, detail-type and detail the stream delivered.
func trustEventOf(t *testing.T, st *cloud.Stack, r trustAuditRow) bus.Entry {
	t.Helper()
	capt := &trustCaptureAPI{}
	p := &publisher.Publisher{API: capt, BusName: st.BusName, Logger: slog.New(slog.DiscardHandler)}
	resp, err := p.Handle(context.Background(), trustStreamRecord(r))
	if err != nil || len(resp.BatchItemFailures) > 0 || len(capt.entries) != 1 {
		t.Fatalf("publisher: %v %v %d entries", err, resp.BatchItemFailures, len(capt.entries))
	}
	return capt.entries[0]
}

// trustRepublisher is the real publisher sending to the stack's EventBridge
// endpoint over HTTP with the SDK: a redelivery of the stream record.
func trustRepublisher(t *testing.T, st *cloud.Stack) *publisher.Publisher {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	eb := eventbridge.NewFromConfig(aws.Config{Region: "us-east-1", HTTPClient: &http.Client{Transport: tr, Timeout: trustDeadline},
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}, func(o *eventbridge.Options) { o.BaseEndpoint = aws.String(st.EventsURL) })
	return &publisher.Publisher{API: eb, BusName: st.BusName, Logger: slog.New(slog.DiscardHandler)}
}

// --- 1. the real path -------------------------------------------------------

func TestTrustVerifiedThroughRealPath(t *testing.T) {
	st, c := startTrust(t)
	repo := trustRepo("vision-api")
	_, d := trustPush(t, st, repo, "1.0.0")
	t0 := time.Now()
	id := trustRegister(t, st, c.dev, "vision-api", "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
	a := trustWaitReason(t, c.dev, id, "verified", "")
	took := time.Since(t0)
	t.Logf("register -> verified: %v (media type %s)", took.Round(time.Millisecond), d.MediaType)
	if took > trustDeadline {
		t.Fatalf("verified after %v, promised within %v", took, trustDeadline)
	}
	if a.body["signature_key_id"] != nil || a.body["revision"] != float64(2) {
		t.Fatalf("verified artifact: %s", a.raw)
	}
	trustDrain(t, st)
	rows := trustAuditRows(t, st, id)
	v := trustVerdicts(rows)
	if len(v) != 1 || v[0].After.Trust != "verified" || v[0].Before.Trust != "unverified" || v[0].Details["verdict"] != "verified" {
		t.Fatalf("want one verified verdict row, got %d: %+v", len(v), v)
	}
	if len(trustRowsOf(rows, "app_artifact.register")) != 1 || len(rows) != 2 {
		t.Fatalf("audit rows: %d", len(rows))
	}
	if dl := st.Bus.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// --- 2. verdicts of the checks ----------------------------------------------

func TestTrustFailedVerificationReasons(t *testing.T) {
	st, c := startTrust(t)
	trustPutPolicy(t, c.trust, map[string]any{"pull_through_prefixes": []string{"pull-through/dockerhub/"}})

	// Never pushed: the digest of an image that exists nowhere.
	ghost := trustDescriptor(t, trustImage(t))
	ghostID := trustRegister(t, st, c.dev, "ghost", "1.0.0", trustRepo("ghost"), "platform_push", ghost.Digest.String(), string(ghost.MediaType))

	// Pushed with one media type, registered with another.
	_, pushed := trustPush(t, st, trustRepo("media"), "1.0.0")
	if pushed.MediaType == trustOCIManifest {
		t.Fatalf("random image is already %s", trustOCIManifest)
	}
	mediaID := trustRegister(t, st, c.dev, "media", "1.0.0", trustRepo("media"), "platform_push", pushed.Digest.String(), trustOCIManifest)

	// Pull-through artifacts: outside the policy's prefixes, and inside (control).
	_, outside := trustPush(t, st, "pull-through/quay/library/nginx", "1.27")
	outsideID := trustRegister(t, st, c.dev, "nginx", "1.27", "pull-through/quay/library/nginx", "pull_through_cache", outside.Digest.String(), string(outside.MediaType))
	_, inside := trustPush(t, st, "pull-through/dockerhub/library/redis", "7.4")
	insideID := trustRegister(t, st, c.dev, "redis", "7.4", "pull-through/dockerhub/library/redis", "pull_through_cache", inside.Digest.String(), string(inside.MediaType))

	t0 := time.Now()
	trustWaitReason(t, c.dev, ghostID, "failed_verification", "digest_not_found")
	trustWaitReason(t, c.dev, mediaID, "failed_verification", "media_type_mismatch")
	trustWaitReason(t, c.dev, outsideID, "failed_verification", "source_not_allowed")
	trustWaitReason(t, c.dev, insideID, "verified", "")
	t.Logf("four verdicts within %v", time.Since(t0).Round(time.Millisecond))

	trustDrain(t, st)
	for id, reason := range map[string]string{ghostID: "digest_not_found", mediaID: "media_type_mismatch", outsideID: "source_not_allowed"} {
		v := trustVerdicts(trustAuditRows(t, st, id))
		if len(v) != 1 || v[0].After.Trust != "failed_verification" || v[0].Details["reason"] != reason {
			t.Errorf("%s: verdict rows %+v, want one failed_verification/%s", id, v, reason)
		}
	}
}

// --- 3. transient registry errors -------------------------------------------

// trustCountingFault is an injected ECR error that counts the calls it answers:
// the registry asks errors.As for its *APIError on every faulted call.
type trustCountingFault struct {
	err   *registry.APIError
	calls atomic.Int64
}

func (f *trustCountingFault) Error() string { return f.err.Error() }

func (f *trustCountingFault) As(target any) bool {
	p, ok := target.(**registry.APIError)
	if ok {
		f.calls.Add(1)
		*p = f.err
	}
	return ok
}

// trustVerifierAttempts is how many times the bus tries the verifier rule's
// target: the template's RetryPolicy.MaximumRetryAttempts + 1.
func trustVerifierAttempts(t *testing.T, st *cloud.Stack) int {
	t.Helper()
	evs, err := st.Template.FunctionEvents("VerifierFunction", map[string]string{"EventBus": st.BusName})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if rp, ok := ev.Properties["RetryPolicy"].(map[string]any); ok && ev.Type == "EventBridgeRule" {
			return int(rp["MaximumRetryAttempts"].(float64)) + 1
		}
	}
	t.Fatal("no RetryPolicy on the verifier rule")
	return 0
}

// trustBusBackoff mirrors the backoff cloud.Start gives the bus (200ms doubling,
// capped at 6.4s); it only sizes the deadline of the dead-letter wait.
func trustBusBackoff(attempt int) time.Duration {
	return time.Duration(200<<min(attempt, 5)) * time.Millisecond
}

// TestTrustRegistryErrorsRetriedThenDeadLettered runs the template's whole
// retry policy (every attempt the rule allows) with the bus's back-off cut
// to a millisecond (about 0.2 s in all); each attempt still makes the SDK's
// own 3 tries. The deadline is sized as if the real back-off
// (trustBusBackoff) applied.
func TestTrustRegistryErrorsRetriedThenDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *registry.APIError
	}{{"server-error", registry.ErrServer}, {"throttling", registry.ErrThrottling}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Retries as many as the template says, but milliseconds apart.
			st, c := startTrustWith(t, func(int) time.Duration { return time.Millisecond })
			attempts := trustVerifierAttempts(t, st)
			repo := trustRepo("flaky")
			_, d := trustPush(t, st, repo, "1.0.0")
			// Whatever the push itself triggers settles before the fault, so
			// the fault counts the verifier's calls only.
			trustDrain(t, st)
			fault := &trustCountingFault{err: tc.err}
			st.Registry.FailECR("BatchGetImage", fault)
			t0 := time.Now()
			id := trustRegister(t, st, c.dev, "flaky", "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))

			// The bus's retry schedule, plus per attempt the SDK's own retries
			// (3 tries, jittered back-off up to 2s then 4s) and slack.
			budget := 10 * time.Second
			for i := 1; i < attempts; i++ {
				budget += trustBusBackoff(i)
			}
			budget += time.Duration(attempts) * 7 * time.Second
			deadline := time.Now().Add(budget)
			var dl *bus.DeadLetter
			for dl == nil {
				// While it is retried the artifact stays unverified.
				a := c.dev.call("GET", base+"/"+id, "", nil)
				if a.body["trust_state"] != "unverified" || a.body["revision"] != float64(1) {
					t.Fatalf("during retries after %d BatchGetImage calls: %s", fault.calls.Load(), a.raw)
				}
				for _, x := range st.Bus.DeadLetters() {
					if x.Target == "VerifierFunction" {
						dl = &x
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no dead letter within %v; %d BatchGetImage calls", budget, fault.calls.Load())
				}
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(t0)
			calls := fault.calls.Load()
			t.Logf("%s: dead-lettered after %v: %d verifier attempts (template: %d), %d BatchGetImage calls (%.1f per attempt); last error: %s",
				tc.name, took.Round(time.Millisecond), dl.Attempts, attempts, calls, float64(calls)/float64(dl.Attempts), dl.LastError)
			if dl.Attempts != attempts || !strings.HasPrefix(dl.Rule, "VerifierFunction.") || dl.EventBusName != st.BusName ||
				dl.Event.DetailType != publisher.DetailRegistered || !strings.Contains(dl.LastError, tc.err.Type) {
				t.Fatalf("dead letter: %+v", dl)
			}
			if calls < int64(attempts) {
				t.Fatalf("%d BatchGetImage calls for %d verifier attempts", calls, attempts)
			}
			trustDrain(t, st)
			if n := fault.calls.Load(); n != calls {
				t.Fatalf("BatchGetImage called %d more times after the dead letter", n-calls)
			}
			a := c.dev.call("GET", base+"/"+id, "", nil)
			if a.body["trust_state"] != "unverified" || a.body["trust_reason"] != nil || a.body["revision"] != float64(1) {
				t.Fatalf("after the dead letter: %s", a.raw)
			}
			if v := trustVerdicts(trustAuditRows(t, st, id)); len(v) != 0 {
				t.Fatalf("a transient error wrote verdicts: %+v", v)
			}
			if n := len(trustAuditRows(t, st, id)); n != 1 {
				t.Fatalf("%d audit rows, want the register row only", n)
			}

			// Redriving the dead letter once the registry recovered verifies it.
			st.Registry.FailECR("BatchGetImage", nil)
			res := st.Bus.Put(context.Background(), []bus.Entry{{Source: dl.Event.Source, DetailType: dl.Event.DetailType,
				Detail: string(dl.Event.Detail), EventBusName: st.BusName, Resources: dl.Event.Resources}})
			if res[0].ErrorCode != "" {
				t.Fatalf("redrive: %+v", res)
			}
			trustWaitReason(t, c.dev, id, "verified", "")
		})
	}
}

// --- 4. signatures ----------------------------------------------------------

func TestTrustSignatures(t *testing.T) {
	st, c := startTrust(t)
	key, other := sigtest.GenerateKey(), sigtest.GenerateKey()
	const keyID = "release-key-1"
	channels := trustChannels("dev", "staging", "production", "signed")
	channels[3]["signature_required"] = true
	trustPutPolicy(t, c.trust, map[string]any{"signature_required": true, "channels": channels,
		"trusted_keys": []map[string]string{{"key_id": keyID, "pem": sigtest.KeyPEM(&key.PublicKey)}}})
	ctx := context.Background()
	elsewhere := trustDescriptor(t, trustImage(t)).Digest.String()

	type sign func(repo name.Repository, d v1.Descriptor) error
	legacy := func(k *ecdsa.PrivateKey, tm sigtest.Tamper) sign {
		return func(repo name.Repository, d v1.Descriptor) error {
			return sigtest.PushLegacyTampered(ctx, repo, d.Digest.String(), k, tm)
		}
	}
	bundle := func(k *ecdsa.PrivateKey, tm sigtest.Tamper) sign {
		return func(repo name.Repository, d v1.Descriptor) error {
			return sigtest.PushBundleTampered(ctx, repo, d, k, tm)
		}
	}
	cases := []struct {
		name          string
		sign          sign // nil: unsigned
		state, reason string
	}{
		{"legacy-valid", legacy(key, sigtest.Tamper{}), "verified", ""},
		{"legacy-unsigned", nil, "failed_verification", "signature_missing"},
		{"legacy-wrong-key", legacy(other, sigtest.Tamper{}), "failed_verification", "signature_invalid"},
		{"legacy-other-digest", legacy(key, sigtest.Tamper{OtherDigest: elsewhere}), "failed_verification", "signature_invalid"},
		{"legacy-tampered", legacy(key, sigtest.Tamper{CorruptPayload: true}), "failed_verification", "signature_invalid"},
		{"bundle-valid", bundle(key, sigtest.Tamper{}), "verified", ""},
		{"bundle-unsigned", nil, "failed_verification", "signature_missing"},
		{"bundle-wrong-key", bundle(other, sigtest.Tamper{}), "failed_verification", "signature_invalid"},
		{"bundle-other-digest", bundle(key, sigtest.Tamper{OtherDigest: elsewhere}), "failed_verification", "signature_invalid"},
		{"bundle-tampered", bundle(key, sigtest.Tamper{CorruptPayload: true}), "failed_verification", "signature_invalid"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				dev := &client{t: t, base: st.APIURL, token: c.dev.token}
				slug := "sig-" + tc.name
				repo := trustRepo(slug)
				_, d := trustPush(t, st, repo, "1.0.0")
				if tc.sign != nil {
					if err := tc.sign(trustRepoRef(t, st, repo), d); err != nil {
						t.Fatal(err)
					}
				}
				t0 := time.Now()
				id := trustRegister(t, st, dev, slug, "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
				a := trustWaitReason(t, dev, id, tc.state, tc.reason)
				t.Logf("%s: %s %q in %v", tc.name, tc.state, tc.reason, time.Since(t0).Round(time.Millisecond))
				wantKey := any(nil)
				if tc.state == "verified" {
					wantKey = keyID
				}
				// The verdict's audit row names the key that signed...
				v := trustVerdicts(trustAuditRows(t, st, id))
				if len(v) != 1 || v[0].Details["signature_key_id"] != wantKey {
					t.Fatalf("verdict rows %+v, want one with details.signature_key_id %v", v, wantKey)
				}
				// ...and so does the artifact: channels that require a
				// signature admit it only with signature_key_id set.
				if a.body["signature_key_id"] != wantKey {
					t.Errorf("artifact signature_key_id %v, want %v (the verdict row has %v): %s",
						a.body["signature_key_id"], wantKey, v[0].Details["signature_key_id"], a.raw)
				}
				if tc.state == "verified" {
					if p := dev.call("POST", base+"/"+id+"/promote", `{"channel":"signed"}`, nil); p.status != 200 {
						t.Fatalf("promote a signed, verified artifact into a channel that requires signatures: %d %s", p.status, p.raw)
					}
				}
			})
		}
	})
	trustDrain(t, st)
	if v := trustVerdicts(trustAuditRows(t, st, "")); len(v) != len(cases) {
		t.Fatalf("%d verdict rows for %d artifacts", len(v), len(cases))
	}
	for _, dl := range st.Bus.DeadLetters() {
		t.Errorf("dead letter: %s after %d attempts: %s", dl.Event.DetailType, dl.Attempts, dl.LastError)
	}
}

// TestTrustChannelOnlySignaturePolicy: signatures required by one channel,
// not by the project. An unsigned artifact verifies (it may go to the other
// channels) and that channel refuses it; a signature that is there but does
// not hold fails verification as it would under the project-wide policy.
func TestTrustChannelOnlySignaturePolicy(t *testing.T) {
	st, c := startTrust(t)
	key, other := sigtest.GenerateKey(), sigtest.GenerateKey()
	channels := trustChannels("dev", "staging", "production", "signed")
	channels[3]["signature_required"] = true
	trustPutPolicy(t, c.trust, map[string]any{"signature_required": false, "channels": channels,
		"trusted_keys": []map[string]string{{"key_id": "release-key-1", "pem": sigtest.KeyPEM(&key.PublicKey)}}})
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		key           *ecdsa.PrivateKey // nil: unsigned
		state, reason string
		signedChannel int // status of a promote into "signed"
	}{
		{"unsigned", nil, "verified", "", 409},
		{"wrong-key", other, "failed_verification", "signature_invalid", 409},
		{"signed", key, "verified", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slug := "chan-" + tc.name
			repo := trustRepo(slug)
			_, d := trustPush(t, st, repo, "1.0.0")
			if tc.key != nil {
				if err := sigtest.PushBundleTampered(ctx, trustRepoRef(t, st, repo), d, tc.key, sigtest.Tamper{}); err != nil {
					t.Fatal(err)
				}
			}
			id := trustRegister(t, st, c.dev, slug, "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
			trustWaitReason(t, c.dev, id, tc.state, tc.reason)
			p := c.dev.call("POST", base+"/"+id+"/promote", `{"channel":"signed"}`, nil)
			if p.status != tc.signedChannel {
				t.Fatalf("promote into signed: %d %s, want %d", p.status, p.raw, tc.signedChannel)
			}
			if tc.name == "unsigned" {
				if code, reason := trustErrorReason(p); code != "app_artifact_state_invalid" || reason != "channel_requires_signature" {
					t.Fatalf("unsigned into signed: %s/%s", code, reason)
				}
				if d := c.dev.call("POST", base+"/"+id+"/promote", `{"channel":"dev"}`, nil); d.status != 200 {
					t.Fatalf("unsigned into dev: %d %s", d.status, d.raw)
				}
			}
		})
	}
}

// --- 5. quarantine ----------------------------------------------------------

func trustWantQuarantine(t *testing.T, a answer, what string) {
	t.Helper()
	code, reason := trustErrorReason(a)
	e, _ := a.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	if a.status != 409 || code != "app_artifact_state_invalid" || reason != "trust_quarantine" || d["escalate_to"] == nil {
		t.Fatalf("%s: want 409 trust_quarantine pointing at the trust owner, got %d %s", what, a.status, a.raw)
	}
}

func TestTrustQuarantine(t *testing.T) {
	st, c := startTrust(t)

	// After failed_verification.
	ghost := trustDescriptor(t, trustImage(t))
	failed := trustRegister(t, st, c.dev, "ghost", "1.0.0", trustRepo("ghost"), "platform_push", ghost.Digest.String(), string(ghost.MediaType))
	trustWaitReason(t, c.dev, failed, "failed_verification", "digest_not_found")
	trustWantQuarantine(t, c.dev.call("POST", base+"/"+failed+"/promote", `{"channel":"dev"}`, nil), "promote after failed_verification")
	trustWantQuarantine(t, c.admin.call("POST", base+"/"+failed+"/promote", `{"channel":"staging"}`, nil), "admin promote after failed_verification")
	trustWantQuarantine(t, c.dev.call("POST", base+"/"+failed+"/deprecate", `{"reason":"old"}`, nil), "deprecate after failed_verification")

	// After revoke.
	repo := trustRepo("revoked")
	_, d := trustPush(t, st, repo, "1.0.0")
	rev := trustRegister(t, st, c.dev, "revoked", "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
	waitTrust(t, c.dev, rev, "verified")
	if a := c.dev.call("POST", base+"/"+rev+"/promote", `{"channel":"dev"}`, nil); a.status != 200 {
		t.Fatalf("promote: %d %s", a.status, a.raw)
	}
	if a := c.dev.call("POST", base+"/"+rev+"/revoke", `{"reason":"key leaked"}`, nil); a.status != 403 {
		t.Fatalf("developer revoke: %d %s", a.status, a.raw)
	}
	if a := c.trust.call("POST", base+"/"+rev+"/revoke", `{}`, nil); a.status != 400 {
		t.Fatalf("revoke without a reason: %d %s", a.status, a.raw)
	}
	a := c.trust.call("POST", base+"/"+rev+"/revoke", `{"reason":"key leaked"}`, nil)
	if a.status != 200 || a.body["trust_state"] != "revoked" {
		t.Fatalf("revoke: %d %s", a.status, a.raw)
	}
	trustWantQuarantine(t, c.dev.call("POST", base+"/"+rev+"/promote", `{"channel":"staging"}`, nil), "promote after revoke")
	trustWantQuarantine(t, c.dev.call("POST", base+"/"+rev+"/deprecate", `{"reason":"old"}`, nil), "deprecate after revoke")
	if a := c.trust.call("POST", base+"/"+rev+"/revoke", `{"reason":"again"}`, nil); a.status != 409 {
		t.Fatalf("second revoke: %d %s", a.status, a.raw)
	}
	if a := c.trust.call("POST", base+"/"+rev+"/verify", ``, nil); a.status != 409 {
		t.Fatalf("re-verify a revoked artifact: %d %s", a.status, a.raw)
	}
	// A failed artifact can be revoked too, and stays quarantined.
	if a := c.trust.call("POST", base+"/"+failed+"/revoke", `{"reason":"never pushed"}`, nil); a.status != 200 || a.body["trust_state"] != "revoked" {
		t.Fatalf("revoke failed artifact: %d %s", a.status, a.raw)
	}
	trustWantQuarantine(t, c.dev.call("POST", base+"/"+failed+"/promote", `{"channel":"dev"}`, nil), "promote after failed then revoke")
	trustDrain(t, st)
	for _, id := range []string{failed, rev} {
		rows := trustAuditRows(t, st, id)
		if n := len(trustRowsOf(rows, "app_artifact.revoke")); n != 1 {
			t.Fatalf("%s: %d revoke rows", id, n)
		}
		if n := len(trustRowsOf(rows, "app_artifact.deprecate")); n != 0 {
			t.Fatalf("%s: %d deprecate rows", id, n)
		}
	}
}

// trustCall is a goroutine-safe API call (client.call is not: it counts
// and fails the test) over hc.
func trustCall(hc *http.Client, st *cloud.Stack, token, method, path, body, key string) (int, string, error) {
	req, _ := http.NewRequest(method, st.APIURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Project-ID", trustProject)
	req.Header.Set("X-Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// TestTrustConcurrentRevokeAndPromote races 16 promotes (each into its own
// channel) against 16 revokes of one verified artifact, in rounds where the
// revokes start 0, 3 and 10 ms after the promotes, so that revocations land
// before, among and after promotions.
func TestTrustConcurrentRevokeAndPromote(t *testing.T) {
	const n = 32
	st, c := startTrust(t)
	// Its own connections, closed before the stack is: connections the
	// client dialled and never used would hold up the servers' shutdown.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	hc := &http.Client{Transport: tr, Timeout: trustDeadline}
	t.Cleanup(tr.CloseIdleConnections)

	var names []string
	for i := range n / 2 {
		names = append(names, fmt.Sprintf("ch-%02d", i))
	}
	trustPutPolicy(t, c.trust, map[string]any{"channels": trustChannels(names...)})
	for round, delay := range []time.Duration{0, 3 * time.Millisecond, 10 * time.Millisecond} {
		slug := fmt.Sprintf("racy-%d", round)
		repo := trustRepo(slug)
		_, d := trustPush(t, st, repo, "1.0.0")
		id := trustRegister(t, st, c.dev, slug, "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
		waitTrust(t, c.dev, id, "verified")
		trustDrain(t, st)

		type result struct {
			op, status, raw string
			err             error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-gate
				var r result
				var code int
				if i%2 == 0 {
					r.op = "promote"
					code, r.raw, r.err = trustCall(hc, st, c.dev.token, "POST", base+"/"+id+"/promote", `{"channel":"`+names[i/2]+`"}`, fmt.Sprintf("race-%d-promote-%d", round, i))
				} else {
					time.Sleep(delay)
					r.op = "revoke"
					code, r.raw, r.err = trustCall(hc, st, c.trust.token, "POST", base+"/"+id+"/revoke", fmt.Sprintf(`{"reason":"race %d"}`, i), fmt.Sprintf("race-%d-revoke-%d", round, i))
				}
				r.status = fmt.Sprint(code)
				if code == 409 {
					var e map[string]any
					_ = json.Unmarshal([]byte(r.raw), &e)
					_, reason := trustErrorReason(answer{body: e})
					r.status += "/" + reason
				}
				results[i] = r
			})
		}
		t0 := time.Now()
		close(gate)
		wg.Wait()
		took := time.Since(t0)
		counts := map[string]int{}
		promoted, revoked := 0, 0
		for _, r := range results {
			if r.err != nil {
				t.Fatalf("%s: %v", r.op, r.err)
			}
			counts[r.op+" "+r.status]++
			switch {
			case r.status == "200" && r.op == "promote":
				promoted++
			case r.status == "200" && r.op == "revoke":
				revoked++
			case r.status == "409/trust_quarantine" && r.op == "promote",
				r.status == "409/trust_transition_invalid" && r.op == "revoke",
				r.status == "409/concurrent_update":
			default:
				t.Errorf("%s: %s %s", r.op, r.status, r.raw)
			}
		}
		if revoked != 1 {
			t.Fatalf("round %d: %d revokes succeeded, want exactly 1: %v", round, revoked, counts)
		}
		trustDrain(t, st)

		// Walk the audit chain from the register row: each row's before is
		// the previous row's after, every row is on the chain, and nothing
		// is promoted once revoked.
		rows := trustAuditRows(t, st, id)
		final := c.dev.call("GET", base+"/"+id, "", nil)
		if final.body["trust_state"] != "revoked" || final.body["revision"] != float64(len(rows)) {
			t.Fatalf("final artifact (revision vs %d audit rows): %s", len(rows), final.raw)
		}
		var chain []trustAuditRow
		left := slices.Clone(rows)
		for len(left) > 0 {
			var next []int
			for i, r := range left {
				if len(chain) == 0 && r.Before == nil || len(chain) > 0 && r.Before != nil && trustSameSnapshot(chain[len(chain)-1].After, r.Before) {
					next = append(next, i)
				}
			}
			if len(next) != 1 {
				t.Fatalf("audit chain breaks after %d rows: %d candidates (%d rows left)", len(chain), len(next), len(left))
			}
			chain = append(chain, left[next[0]])
			left = slices.Delete(left, next[0], next[0]+1)
		}
		revokedAt, before, after := -1, 0, 0
		for i, r := range chain {
			switch r.Action {
			case "app_artifact.revoke":
				revokedAt = i
			case "app_artifact.promote":
				if revokedAt >= 0 || r.Before.Trust == "revoked" || r.After.Trust == "revoked" {
					after++
					t.Errorf("round %d: promotion into %v recorded after the revocation (chain position %d, revoked at %d)", round, r.Details["channel"], i, revokedAt)
				} else {
					before++
				}
			}
		}
		if revokedAt < 0 || chain[len(chain)-1].After.Trust != "revoked" {
			t.Fatalf("round %d: chain does not end revoked", round)
		}
		if got := len(trustRowsOf(rows, "app_artifact.promote")); got != promoted {
			t.Fatalf("round %d: %d promote rows for %d successful promotes", round, got, promoted)
		}
		last := chain[len(chain)-1].After
		if trustJSON(final.body["channels"]) != trustJSON(last.Channels) {
			t.Fatalf("round %d: artifact channels %v, chain ends with %v", round, final.body["channels"], last.Channels)
		}
		t.Logf("round %d (revokes %v after promotes): %d calls in %v: %v; chain of %d rows, revoked at position %d, %d promotions before it, %d after",
			round, delay, n, took.Round(time.Millisecond), counts, len(chain), revokedAt, before, after)
	}
}

func trustSameSnapshot(a, b any) bool {
	return trustJSON(a) == trustJSON(b)
}

func trustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// --- 6. duplicate delivery --------------------------------------------------

// TestTrustDuplicateDelivery delivers one event many times, concurrently
// with the stream's own delivery: the same detail put on the bus in-process
// and the same stream record re-published over HTTP by the real publisher.
func TestTrustDuplicateDelivery(t *testing.T) {
	st, c := startTrust(t)
	ctx := context.Background()
	repo := trustRepo("dupe")
	_, d := trustPush(t, st, repo, "1.0.0")
	id := trustRegister(t, st, c.dev, "dupe", "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))

	// Right away, while the stream delivers it once: the same event again,
	// put on the bus in-process (same detail) and re-published from the same
	// stream record by the publisher over HTTP, concurrently.
	reg := trustRowsOf(trustAuditRows(t, st, id), "app_artifact.register")
	if len(reg) != 1 {
		t.Fatalf("%d register rows", len(reg))
	}
	ev := trustEventOf(t, st, reg[0])
	if ev.DetailType != publisher.DetailRegistered {
		t.Fatalf("detail-type %q", ev.DetailType)
	}
	pub := trustRepublisher(t, st)
	const copies = 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*copies)
	for range copies {
		wg.Go(func() {
			if res := st.Bus.Put(ctx, []bus.Entry{ev}); res[0].ErrorCode != "" {
				errs <- fmt.Errorf("put: %+v", res[0])
			}
		})
		wg.Go(func() {
			resp, err := pub.Handle(ctx, trustStreamRecord(reg[0]))
			if err != nil || len(resp.BatchItemFailures) > 0 {
				errs <- fmt.Errorf("republish: %v %v", err, resp.BatchItemFailures)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitTrust(t, c.dev, id, "verified")
	trustDrain(t, st)

	// A re-verification request on a verified artifact is refused and writes nothing.
	if a := c.trust.call("POST", base+"/"+id+"/verify", ``, nil); a.status != 409 {
		t.Fatalf("re-verify a verified artifact: %d %s", a.status, a.raw)
	}
	// A late "Verification Requested" event of the same artifact changes nothing.
	late := ev
	late.DetailType = publisher.DetailVerificationRequested
	if res := st.Bus.Put(ctx, []bus.Entry{late, ev}); res[0].ErrorCode != "" || res[1].ErrorCode != "" {
		t.Fatalf("put: %+v", res)
	}
	trustDrain(t, st)
	rows := trustAuditRows(t, st, id)
	if v := trustVerdicts(rows); len(v) != 1 || len(trustRowsOf(rows, trustVerifyAction)) != 1 {
		t.Fatalf("%d verdict rows, %d verify rows after %d deliveries of one event; want 1", len(v), len(trustRowsOf(rows, trustVerifyAction)), 2*copies+3)
	}
	if a := c.dev.call("GET", base+"/"+id, "", nil); a.body["revision"] != float64(2) {
		t.Fatalf("revision: %s", a.raw)
	}
	t.Logf("%d deliveries of the Registered event (1 from the stream, %d in-process, %d re-published over HTTP, 1 late) + 1 late Verification Requested: 1 verdict, %d audit rows",
		2+2*copies, copies, copies, len(rows))

	// Duplicates of a re-verification request: one new verdict.
	ghostImg := trustImage(t)
	gd := trustDescriptor(t, ghostImg)
	grepo := trustRepo("late")
	gid := trustRegister(t, st, c.dev, "late", "1.0.0", grepo, "platform_push", gd.Digest.String(), string(gd.MediaType))
	trustWaitReason(t, c.dev, gid, "failed_verification", "digest_not_found")
	if err := remote.Write(trustRepoRef(t, st, grepo).Tag("1.0.0"), ghostImg); err != nil {
		t.Fatal(err)
	}
	if a := c.trust.call("POST", base+"/"+gid+"/verify", ``, nil); a.status != 202 {
		t.Fatalf("verify: %d %s", a.status, a.raw)
	}
	var req []trustAuditRow
	for _, r := range trustRowsOf(trustAuditRows(t, st, gid), trustVerifyAction) {
		if r.Actor.PrincipalID != lifecycle.Verifier.PrincipalID {
			req = append(req, r)
		}
	}
	if len(req) != 1 {
		t.Fatalf("%d verification request rows", len(req))
	}
	rev := trustEventOf(t, st, req[0])
	if rev.DetailType != publisher.DetailVerificationRequested {
		t.Fatalf("detail-type %q", rev.DetailType)
	}
	errs = make(chan error, 2*copies)
	for range copies {
		wg.Go(func() {
			if res := st.Bus.Put(ctx, []bus.Entry{rev}); res[0].ErrorCode != "" {
				errs <- fmt.Errorf("put: %+v", res[0])
			}
		})
		wg.Go(func() {
			resp, err := pub.Handle(ctx, trustStreamRecord(req[0]))
			if err != nil || len(resp.BatchItemFailures) > 0 {
				errs <- fmt.Errorf("republish: %v %v", err, resp.BatchItemFailures)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	trustWaitReason(t, c.dev, gid, "verified", "")
	trustDrain(t, st)
	v := trustVerdicts(trustAuditRows(t, st, gid))
	if len(v) != 2 || v[0].After.Trust == v[1].After.Trust {
		t.Fatalf("verdict rows %+v, want one failed_verification and one verified", v)
	}
	if dl := st.Bus.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// --- 7. re-verification -----------------------------------------------------

func TestTrustReverification(t *testing.T) {
	st, c := startTrust(t)
	img := trustImage(t)
	d := trustDescriptor(t, img)
	repo := trustRepo("reverify")
	id := trustRegister(t, st, c.dev, "reverify", "1.0.0", repo, "platform_push", d.Digest.String(), string(d.MediaType))
	trustWaitReason(t, c.dev, id, "failed_verification", "digest_not_found")

	// Re-verifying before the image exists: back to the verifier, which
	// still finds nothing.
	if a := c.trust.call("POST", base+"/"+id+"/verify", ``, nil); a.status != 202 {
		t.Fatalf("verify: %d %s", a.status, a.raw)
	}
	trustWaitReason(t, c.dev, id, "failed_verification", "digest_not_found")
	trustDrain(t, st)

	if err := remote.Write(trustRepoRef(t, st, repo).Tag("1.0.0"), img); err != nil {
		t.Fatal(err)
	}
	if a := c.dev.call("POST", base+"/"+id+"/verify", ``, nil); a.status != 403 {
		t.Fatalf("developer verify: %d %s", a.status, a.raw)
	}
	t0 := time.Now()
	a := c.trust.call("POST", base+"/"+id+"/verify", ``, nil)
	if a.status != 202 || a.body["trust_state"] != "unverified" || a.body["trust_reason"] != nil {
		t.Fatalf("verify: %d %s", a.status, a.raw)
	}
	trustWaitReason(t, c.dev, id, "verified", "")
	t.Logf("re-verification request -> verified: %v", time.Since(t0).Round(time.Millisecond))
	trustDrain(t, st)
	rows := trustAuditRows(t, st, id)
	var trail []string
	for _, r := range rows {
		trail = append(trail, fmt.Sprintf("%s(%s by %s)", r.Action, r.After.Trust, r.Actor.PrincipalID))
	}
	if v := trustVerdicts(rows); len(v) != 3 {
		t.Fatalf("verdict rows: %v", trail)
	}
	if a := c.trust.call("POST", base+"/"+id+"/verify", ``, nil); a.status != 409 {
		t.Fatalf("verify a verified artifact: %d %s", a.status, a.raw)
	}
	t.Logf("audit trail: %v", trail)
}
