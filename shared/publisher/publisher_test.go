package publisher_test

// These tests run the outbox relay against real parts: audit rows committed
// by the real lifecycle service over minidyn (read back with Scan and turned
// into DynamoDB stream records), a real aws-sdk-go-v2 EventBridge client, and
// the local EventBridge emulation (infra/local/bus) behind an httptest server
// on 127.0.0.1, with rules whose targets record what they receive. Lambda's
// stream event source mapping (ReportBatchItemFailures, the filter and batch
// size of template.yaml) is emulated by runStream.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/publisher"
)

const (
	testBus      = "gpuaas-app-artifacts-test"
	testOrg      = "org-outbox"
	testProject  = "proj-outbox"
	registryHost = "127.0.0.1:5000"
	signingKeyID = "key-1"
	// maxEntries is PutEvents' limit per call.
	maxEntries = 10
)

// ---------------------------------------------------------------------------
// Committed audit rows: the real lifecycle service over minidyn.

type fixture struct {
	t     *testing.T
	mini  *ddbtest.Server
	ddb   *dynamodb.Client
	table string
	svc   *lifecycle.Service
	n     int
	// artifacts registered, in order.
	artifacts []string
	// mutations is how many successful mutations the scenario made, each
	// of which must have written exactly one audit row.
	mutations int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, mini: ddbtest.Start(t)}
	f.table = f.mini.NewTable(t)
	f.ddb = f.mini.Client()
	svc, err := app.NewService(&app.Config{TableName: f.table, RegistryHost: registryHost, CursorSecret: strings.Repeat("s", 32), Stage: "test"}, f.ddb)
	if err != nil {
		t.Fatal(err)
	}
	svc.Sleep = func(context.Context, int) {}
	f.svc = svc
	return f
}

func perms(ps ...artifact.Permission) map[artifact.Permission]bool {
	m := map[artifact.Permission]bool{}
	for _, p := range ps {
		m[p] = true
	}
	return m
}

func (f *fixture) request(principal string, typ artifact.PrincipalType, ps map[artifact.Permission]bool) *lifecycle.Request {
	f.n++
	return &lifecycle.Request{
		Caller: lifecycle.Caller{
			Principal: artifact.Principal{PrincipalID: principal, PrincipalType: typ},
			OrgID:     testOrg, Perms: ps,
			CorrelationID: fmt.Sprintf("cid-%04d", f.n), TraceID: fmt.Sprintf("Root=1-00000000-%024d", f.n),
		},
		ProjectID: testProject, IdemKey: fmt.Sprintf("idem-%04d", f.n), Fingerprint: fmt.Sprintf("fp-%04d", f.n),
	}
}

func (f *fixture) admin() *lifecycle.Request {
	return f.request("alice", artifact.PrincipalUser, perms(artifact.PermRead, artifact.PermPublish, artifact.PermPromote,
		artifact.PermPromoteProtected, artifact.PermDeprecate, artifact.PermRetire, artifact.PermAudit))
}

func (f *fixture) trustAdmin() *lifecycle.Request {
	return f.request("trent", artifact.PrincipalUser, perms(artifact.PermRead, artifact.PermTrust, artifact.PermAudit))
}

func (f *fixture) ok(res *lifecycle.Result, err error) map[string]any {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("mutation %d: %v", f.n, err)
	}
	if res.Status/100 != 2 || res.Replayed {
		f.t.Fatalf("mutation %d: status %d replayed=%v: %s", f.n, res.Status, res.Replayed, res.Body)
	}
	f.mutations++
	var body map[string]any
	if err := json.Unmarshal(res.Body, &body); err != nil {
		f.t.Fatalf("mutation %d: %v", f.n, err)
	}
	return body
}

func sp(s string) *string { return &s }

func (f *fixture) putPolicy() {
	in := &lifecycle.PolicyInput{
		Channels: []lifecycle.ChannelInput{
			{Name: sp("dev"), Protected: aws.Bool(false), RequiredTrust: []string{"unverified", "verified"}, SignatureRequired: aws.Bool(false)},
			{Name: sp("staging"), Protected: aws.Bool(false), RequiredTrust: []string{"unverified", "verified"}, SignatureRequired: aws.Bool(false)},
			{Name: sp("production"), Protected: aws.Bool(true), RequiredTrust: []string{"verified"}, SignatureRequired: aws.Bool(false)},
		},
		SignatureRequired: aws.Bool(false), TrustedKeys: []lifecycle.KeyInput{},
		AllowedSourceTypes:  []string{"platform_push", "pull_through_cache"},
		PullThroughPrefixes: []string{},
	}
	f.ok(f.svc.PutPolicy(context.Background(), f.trustAdmin(), in))
}

func (f *fixture) intent(slug, version string) string {
	body := f.ok(f.svc.CreateIntent(context.Background(), f.admin(), &lifecycle.IntentInput{
		AppSlug: sp(slug), AppVersion: sp(version), Kind: sp("container_image"), SourceType: sp("platform_push"),
	}))
	return body["intent_id"].(string)
}

func (f *fixture) register(slug, version string, intentID *string) string {
	sum := sha256.Sum256([]byte(slug + ":" + version))
	body := f.ok(f.svc.Register(context.Background(), f.admin(), &lifecycle.RegisterInput{
		AppSlug: sp(slug), AppVersion: sp(version),
		Repository: sp(registryHost + "/" + artifact.RepositoryName(testOrg, testProject, slug)),
		Digest:     sp("sha256:" + hex.EncodeToString(sum[:])), DigestAlgorithm: sp("sha256"),
		Kind: sp("container_image"), SourceType: sp("platform_push"),
		MediaType: sp("application/vnd.oci.image.manifest.v1+json"), PublishIntentID: intentID,
	}))
	id := body["artifact_id"].(string)
	f.artifacts = append(f.artifacts, id)
	return id
}

func (f *fixture) transition(r *lifecycle.Request, id string, cmd artifact.Command) {
	f.ok(f.svc.Transition(context.Background(), r, id, cmd))
}

// verdict records a verifier verdict the way the verifier does.
func (f *fixture) verdict(id string, cmd artifact.Command) {
	f.t.Helper()
	a, _, err := f.svc.Store.GetArtifact(context.Background(), testProject, id)
	if err != nil {
		f.t.Fatal(err)
	}
	r := f.request(lifecycle.Verifier.PrincipalID, lifecycle.Verifier.PrincipalType, nil)
	r.IdemKey, r.Fingerprint = "", ""
	wrote, err := f.svc.RecordVerdict(context.Background(), r, a, nil, func(context.Context, *artifact.Artifact, *lifecycle.Project) (artifact.Command, error) {
		return cmd, nil
	})
	if err != nil || !wrote {
		f.t.Fatalf("verdict on %s: wrote=%v err=%v", id, wrote, err)
	}
	f.mutations++
}

// scenario commits 25 audit rows covering every detail type, then three
// more (register, promote, deprecate) per extra artifact.
func (f *fixture) scenario(extra int) {
	f.t.Helper()
	f.putPolicy()                           // 1 policy_update
	i1 := f.intent("app-a", "1.0.0")        // 2 publish_intent
	i2 := f.intent("app-b", "1.0.0")        // 3
	a1 := f.register("app-a", "1.0.0", &i1) // 4 register
	a2 := f.register("app-b", "1.0.0", &i2) // 5
	a3 := f.register("app-a", "1.0.1", nil) // 6
	a4 := f.register("app-a", "1.0.2", nil) // 7
	a5 := f.register("app-a", "1.0.3", nil) // 8
	a6 := f.register("app-a", "1.0.4", nil) // 9
	f.register("app-a", "1.0.5", nil)       // 10
	f.register("app-b", "1.0.1", nil)       // 11
	admin := f.admin
	f.transition(admin(), a1, artifact.Command{Action: artifact.ActionPromote, Channel: "dev"})          // 12 promote
	f.transition(admin(), a2, artifact.Command{Action: artifact.ActionPromote, Channel: "dev"})          // 13
	f.transition(admin(), a3, artifact.Command{Action: artifact.ActionPromote, Channel: "staging"})      // 14
	f.verdict(a1, artifact.Command{Action: artifact.ActionVerificationPass, KeyID: signingKeyID})        // 15 verify (trust changed)
	f.verdict(a2, artifact.Command{Action: artifact.ActionVerificationPass})                             // 16
	f.transition(admin(), a1, artifact.Command{Action: artifact.ActionPromote, Channel: "production"})   // 17 promote
	f.verdict(a4, artifact.Command{Action: artifact.ActionVerificationFail, Reason: "digest_not_found"}) // 18 verify (trust changed)
	f.transition(f.trustAdmin(), a4, artifact.Command{Action: artifact.ActionRequestVerify})             // 19 verify (verification requested)
	f.transition(f.trustAdmin(), a5, artifact.Command{Action: artifact.ActionRevoke, Reason: "leaked"})  // 20 revoke
	f.transition(admin(), a2, artifact.Command{Action: artifact.ActionDeprecate, Reason: "old"})         // 21 deprecate
	f.transition(admin(), a2, artifact.Command{Action: artifact.ActionRetire, Reason: "gone"})           // 22 retire
	f.transition(admin(), a6, artifact.Command{Action: artifact.ActionDeprecate, Reason: "old"})         // 23
	f.transition(admin(), a6, artifact.Command{Action: artifact.ActionRetire, Reason: "gone"})           // 24
	f.transition(admin(), a3, artifact.Command{Action: artifact.ActionDeprecate, Reason: "old"})         // 25
	for i := range extra {
		id := f.register("app-c", fmt.Sprintf("2.0.%d", i), nil)
		f.transition(admin(), id, artifact.Command{Action: artifact.ActionPromote, Channel: "dev"})
		f.transition(admin(), id, artifact.Command{Action: artifact.ActionDeprecate, Reason: "superseded"})
	}
}

// wantDetailTypes is what scenario(0) must publish.
var wantDetailTypes = map[string]int{
	publisher.DetailRegistered:            8,
	publisher.DetailPromoted:              4,
	publisher.DetailDeprecated:            3,
	publisher.DetailRetired:               2,
	publisher.DetailTrustChanged:          4,
	publisher.DetailVerificationRequested: 1,
	publisher.DetailIntentCreated:         2,
	publisher.DetailPolicyUpdated:         1,
}

func (f *fixture) scan() []map[string]ddbtypes.AttributeValue {
	f.t.Helper()
	var items []map[string]ddbtypes.AttributeValue
	p := dynamodb.NewScanPaginator(f.ddb, &dynamodb.ScanInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		items = append(items, out.Items...)
	}
	return items
}

func str(item map[string]ddbtypes.AttributeValue, k string) string {
	if s, ok := item[k].(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// streamValue renders an attribute value as DynamoDB JSON, the form stream
// records carry.
func streamValue(v ddbtypes.AttributeValue) any {
	switch x := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return map[string]any{"S": x.Value}
	case *ddbtypes.AttributeValueMemberN:
		return map[string]any{"N": x.Value}
	case *ddbtypes.AttributeValueMemberB:
		return map[string]any{"B": x.Value}
	case *ddbtypes.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": x.Value}
	case *ddbtypes.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *ddbtypes.AttributeValueMemberSS:
		return map[string]any{"SS": x.Value}
	case *ddbtypes.AttributeValueMemberNS:
		return map[string]any{"NS": x.Value}
	case *ddbtypes.AttributeValueMemberBS:
		return map[string]any{"BS": x.Value}
	case *ddbtypes.AttributeValueMemberL:
		l := make([]any, len(x.Value))
		for i, e := range x.Value {
			l[i] = streamValue(e)
		}
		return map[string]any{"L": l}
	case *ddbtypes.AttributeValueMemberM:
		m := map[string]any{}
		for k, e := range x.Value {
			m[k] = streamValue(e)
		}
		return map[string]any{"M": m}
	}
	panic(fmt.Sprintf("unexpected attribute value %T", v))
}

func streamImage(t testing.TB, item map[string]ddbtypes.AttributeValue) map[string]events.DynamoDBAttributeValue {
	t.Helper()
	m := map[string]any{}
	for k, v := range item {
		m[k] = streamValue(v)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var img map[string]events.DynamoDBAttributeValue
	if err := json.Unmarshal(raw, &img); err != nil {
		t.Fatal(err)
	}
	return img
}

type streamSeq struct{ n int }

func (s *streamSeq) record(t testing.TB, name string, item map[string]ddbtypes.AttributeValue) events.DynamoDBEventRecord {
	s.n++
	img := streamImage(t, item)
	keys := map[string]events.DynamoDBAttributeValue{"PK": img["PK"], "SK": img["SK"]}
	rec := events.DynamoDBEventRecord{
		EventID: fmt.Sprintf("ev-%06d", s.n), EventName: name, EventVersion: "1.1", EventSource: "aws:dynamodb",
		AWSRegion: "us-east-1", EventSourceArn: "arn:aws:dynamodb:us-east-1:123456789012:table/artifacts/stream/test",
		Change: events.DynamoDBStreamRecord{
			ApproximateCreationDateTime: events.SecondsEpochTime{Time: time.Unix(1_700_000_000+int64(s.n), 0)},
			Keys:                        keys, SequenceNumber: fmt.Sprintf("%021d", 1000+s.n), SizeBytes: int64(len(keys)),
			StreamViewType: "NEW_IMAGE",
		},
	}
	if name != "REMOVE" {
		rec.Change.NewImage = img
	}
	return rec
}

// committed is the table read back: audit rows in commit order and the rest.
type committed struct {
	audits   []map[string]ddbtypes.AttributeValue
	others   []map[string]ddbtypes.AttributeValue
	byID     map[string]map[string]ddbtypes.AttributeValue
	auditIDs []string
}

func (f *fixture) committed() *committed {
	f.t.Helper()
	c := &committed{byID: map[string]map[string]ddbtypes.AttributeValue{}}
	for _, it := range f.scan() {
		if str(it, "entity") == "audit" {
			c.audits = append(c.audits, it)
			c.byID[str(it, "audit_id")] = it
		} else {
			c.others = append(c.others, it)
		}
	}
	// audit ids are ULIDs: sorted, they are in commit order.
	sort.Slice(c.audits, func(i, j int) bool { return str(c.audits[i], "audit_id") < str(c.audits[j], "audit_id") })
	for _, a := range c.audits {
		c.auditIDs = append(c.auditIDs, str(a, "audit_id"))
	}
	if len(c.audits) != f.mutations {
		f.t.Fatalf("the table holds %d audit rows for %d successful mutations", len(c.audits), f.mutations)
	}
	return c
}

// records is the table's stream as Lambda would see it without a filter:
// each audit row's INSERT in commit order, interleaved with the images of
// the other items (artifacts as MODIFY, the rest as INSERT), plus REMOVE
// records: one with no image (what a NEW_IMAGE stream gives for a TTL
// deletion of an audit row) and one that still carries an audit image whose
// audit_id was never committed, which must not be published either.
func (c *committed) records(t testing.TB) (all []events.DynamoDBEventRecord, removedID string) {
	var s streamSeq
	for i, a := range c.audits {
		all = append(all, s.record(t, "INSERT", a))
		if i < len(c.others) {
			o := c.others[i]
			name := "INSERT"
			if str(o, "entity") == "artifact" {
				name = "MODIFY"
			}
			all = append(all, s.record(t, name, o))
		}
		if i == len(c.audits)/2 {
			all = append(all, s.record(t, "REMOVE", a))
			ghost := maps.Clone(a)
			removedID = "aud_REMOVED0000000000000000"
			ghost["audit_id"] = &ddbtypes.AttributeValueMemberS{Value: removedID}
			ghost["SK"] = &ddbtypes.AttributeValueMemberS{Value: removedID}
			rec := s.record(t, "INSERT", ghost)
			rec.EventName = "REMOVE"
			all = append(all, rec)
		}
	}
	for _, o := range c.others[min(len(c.others), len(c.audits)):] {
		all = append(all, s.record(t, "INSERT", o))
	}
	return all, removedID
}

// ---------------------------------------------------------------------------
// template.yaml: the publisher's stream filter and batching, the verifier's rule.

type mapping struct {
	filter     *bus.Pattern
	batchSize  int
	maxRetries int
}

func publisherMapping(t testing.TB) mapping {
	t.Helper()
	evs, err := ddbtest.Template(t).FunctionEvents("PublisherFunction", map[string]string{"EventBus": testBus})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type != "DynamoDB" {
			continue
		}
		fc, _ := ev.Properties["FilterCriteria"].(map[string]any)
		filters, _ := fc["Filters"].([]any)
		if len(filters) != 1 {
			t.Fatalf("publisher stream mapping: want one filter, got %v", fc)
		}
		raw, _ := filters[0].(map[string]any)["Pattern"].(string)
		p, err := bus.ParsePattern([]byte(raw))
		if err != nil {
			t.Fatalf("publisher stream filter %q: %v", raw, err)
		}
		return mapping{filter: p, batchSize: toInt(t, ev.Properties["BatchSize"]), maxRetries: toInt(t, ev.Properties["MaximumRetryAttempts"])}
	}
	t.Fatal("template.yaml: PublisherFunction has no DynamoDB event")
	return mapping{}
}

func toInt(t testing.TB, v any) int {
	switch x := v.(type) {
	case int:
		return x
	case float64:
		return int(x)
	case string:
		var n int
		if _, err := fmt.Sscan(x, &n); err == nil {
			return n
		}
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// filter keeps the records Lambda's event filtering hands the publisher.
func (m mapping) filterRecords(t testing.TB, recs []events.DynamoDBEventRecord) []events.DynamoDBEventRecord {
	var out []events.DynamoDBEventRecord
	for _, r := range recs {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if m.filter.Matches(raw) {
			out = append(out, r)
		}
	}
	return out
}

func verifierPattern(t testing.TB) *bus.Pattern {
	t.Helper()
	evs, err := ddbtest.Template(t).FunctionEvents("VerifierFunction", map[string]string{"EventBus": testBus})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == "EventBridgeRule" {
			raw, err := json.Marshal(ev.Properties["Pattern"])
			if err != nil {
				t.Fatal(err)
			}
			p, err := bus.ParsePattern(raw)
			if err != nil {
				t.Fatalf("verifier rule pattern %s: %v", raw, err)
			}
			return p
		}
	}
	t.Fatal("template.yaml: VerifierFunction has no EventBridgeRule")
	return nil
}

// ---------------------------------------------------------------------------
// The bus: bus.New behind httptest on 127.0.0.1, a real SDK client, targets
// that record deliveries.

type consumer struct {
	mu     sync.Mutex
	events []events.EventBridgeEvent
}

func (c *consumer) target(_ context.Context, ev events.EventBridgeEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev)
	return nil
}

func (c *consumer) received() []events.EventBridgeEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

type busEnv struct {
	bus      *bus.Bus
	url      string
	client   *eventbridge.Client
	all      *consumer // rule: every event of source gpuaas.app-artifacts
	verifier *consumer // rule: template.yaml's VerifierFunction pattern

	mu sync.Mutex
	// callSizes is the number of entries of each PutEvents request the
	// server received.
	callSizes []int
	// dropResponse, when it returns true for the n-th request (1-based),
	// makes the server process the request and then drop the connection
	// without answering: a response lost after the commit.
	dropResponse func(n int) bool
	dropped      int
}

func newBus(t *testing.T) *busEnv {
	t.Helper()
	e := &busEnv{all: &consumer{}, verifier: &consumer{}}
	all, err := bus.ParsePattern([]byte(`{"source": ["` + publisher.Source + `"]}`))
	if err != nil {
		t.Fatal(err)
	}
	e.bus = bus.New(bus.Options{
		Rules: []bus.Rule{
			{Name: "all-artifact-events", EventBusName: testBus, Pattern: all, Targets: map[string]bus.Target{"audit-sink": e.all.target}},
			{Name: "verification-wanted", EventBusName: testBus, Pattern: verifierPattern(t), Targets: map[string]bus.Target{"verifier": e.verifier.target}},
		},
		Backoff: func(int) time.Duration { return 0 },
	})
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(func() {
		srv.Close()
		if err := e.bus.Close(); err != nil {
			t.Errorf("bus.Close: %v", err)
		}
	})
	e.url = srv.URL
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("bus endpoint %s is not on 127.0.0.1", srv.URL)
	}
	e.client = eventbridge.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:  awshttp.NewBuildableClient(),
	}, func(o *eventbridge.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		// The SDK's own retries stay on (as in production); only their
		// back-off is zero so the test does not sleep.
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	})
	return e
}

func (e *busEnv) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct{ Entries []json.RawMessage }
	_ = json.Unmarshal(body, &in)
	e.mu.Lock()
	e.callSizes = append(e.callSizes, len(in.Entries))
	n := len(e.callSizes)
	drop := e.dropResponse != nil && e.dropResponse(n)
	if drop {
		e.dropped++
	}
	e.mu.Unlock()
	if !drop {
		e.bus.ServeHTTP(w, r)
		return
	}
	// Commit on the bus, then lose the answer.
	e.bus.ServeHTTP(httptest.NewRecorder(), r)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, not a clean close
		}
		_ = conn.Close()
	}
}

func (e *busEnv) calls() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.callSizes)
}

func (e *busEnv) wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.bus.Wait(ctx); err != nil {
		t.Fatalf("bus deliveries still in flight: %v", err)
	}
	if dl := e.bus.DeadLetters(); len(dl) > 0 {
		t.Fatalf("bus dead-lettered %d deliveries: %+v", len(dl), dl[0])
	}
}

// ---------------------------------------------------------------------------
// Events as consumers see them.

type snapshot struct {
	Lifecycle string   `json:"lifecycle_state"`
	Trust     string   `json:"trust_state"`
	Channels  []string `json:"channels"`
}

type detail struct {
	AuditID    string  `json:"audit_id"`
	EventID    string  `json:"event_id"`
	Action     string  `json:"action"`
	OrgID      string  `json:"org_id"`
	ProjectID  string  `json:"project_id"`
	ArtifactID *string `json:"artifact_id"`
	Actor      struct {
		PrincipalID   string `json:"principal_id"`
		PrincipalType string `json:"principal_type"`
	} `json:"actor"`
	CorrelationID  string             `json:"correlation_id"`
	TraceID        *string            `json:"trace_id"`
	IdempotencyKey string             `json:"idempotency_key"`
	Before         *snapshot          `json:"before"`
	After          *snapshot          `json:"after"`
	Details        map[string]any     `json:"details"`
	OccurredAt     time.Time          `json:"occurred_at"`
	Artifact       *artifact.Artifact `json:"artifact"`
}

func decodeDetail(t testing.TB, ev events.EventBridgeEvent) detail {
	t.Helper()
	var d detail
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatalf("event %s: detail %s: %v", ev.ID, ev.Detail, err)
	}
	return d
}

// dedupe groups deliveries by detail.event_id, as a consumer would.
func dedupe(t testing.TB, evs []events.EventBridgeEvent) (byID map[string][]events.EventBridgeEvent, duplicates int) {
	byID = map[string][]events.EventBridgeEvent{}
	for _, ev := range evs {
		id := decodeDetail(t, ev).EventID
		byID[id] = append(byID[id], ev)
	}
	for _, evs := range byID {
		duplicates += len(evs) - 1
	}
	return byID, duplicates
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// checkDelivered asserts that every committed audit row reached each
// consumer (after dedupe by event id), nothing else did, and returns the
// duplicates per consumer.
func checkDelivered(t *testing.T, e *busEnv, c *committed) (dupAll, dupVerifier int) {
	t.Helper()
	e.wait(t)
	all, dupAll := dedupe(t, e.all.received())
	if diff := cmp.Diff(c.auditIDs, sortedKeys(all)); diff != "" {
		t.Errorf("distinct event ids at the audit sink != committed audit rows (-committed +delivered):\n%s", diff)
	}
	var wantVerifier []string
	for _, id := range c.auditIDs {
		a := c.byID[id]
		if act := str(a, "action"); act == "app_artifact.register" ||
			(act == "app_artifact.verify" && afterTrust(a) == "unverified") {
			wantVerifier = append(wantVerifier, id)
		}
	}
	ver, dupVerifier := dedupe(t, e.verifier.received())
	if diff := cmp.Diff(wantVerifier, sortedKeys(ver)); diff != "" {
		t.Errorf("distinct event ids at the verifier != committed registrations and verification requests (-want +got):\n%s", diff)
	}
	logDuplicates(t, "audit sink", all)
	logDuplicates(t, "verifier", ver)
	return dupAll, dupVerifier
}

// logDuplicates logs, in one line, which event ids a consumer received more
// than once: how many ids per number of deliveries, and the first few ids.
func logDuplicates(t *testing.T, who string, byID map[string][]events.EventBridgeEvent) {
	t.Helper()
	times := map[int]int{}
	var ids []string
	for _, id := range sortedKeys(byID) {
		if n := len(byID[id]); n > 1 {
			times[n]++
			ids = append(ids, fmt.Sprintf("%s×%d", id, n))
		}
	}
	if len(ids) == 0 {
		return
	}
	if len(ids) > 5 {
		ids = append(ids[:5], fmt.Sprintf("and %d more", len(ids)-5))
	}
	t.Logf("%s: duplicated event ids by number of deliveries %v: %s", who, times, strings.Join(ids, ", "))
}

func afterTrust(a map[string]ddbtypes.AttributeValue) string {
	if m, ok := a["after"].(*ddbtypes.AttributeValueMemberM); ok {
		return str(m.Value, "trust_state")
	}
	return ""
}

// ---------------------------------------------------------------------------
// Lambda: the stream event source mapping with ReportBatchItemFailures.

type handler func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

type invocation struct {
	batch    []events.DynamoDBEventRecord
	resp     events.DynamoDBEventResponse
	err      error
	panicked any
}

type streamStats struct {
	invocations, crashed, partial, reported int
	// maxRetries is the most retries any checkpoint needed.
	maxRetries int
}

func invoke(h handler, batch []events.DynamoDBEventRecord) (inv invocation) {
	inv.batch = batch
	defer func() {
		if p := recover(); p != nil {
			inv.panicked = p
		}
	}()
	inv.resp, inv.err = h(context.Background(), events.DynamoDBEvent{Records: batch})
	return inv
}

// runStream feeds records to h as Lambda does: batches of batchSize from the
// checkpoint; a crashed invocation (error or panic) retries the batch; a
// partial failure moves the checkpoint to the failed record with the lowest
// sequence number and retries from there. More than maxRetries retries of one
// checkpoint would send the records to the on-failure destination: a test
// failure here. each, if set, checks every invocation.
func runStream(t *testing.T, h handler, records []events.DynamoDBEventRecord, batchSize, maxRetries int, each func(invocation)) streamStats {
	t.Helper()
	var st streamStats
	pos, retries := 0, 0
	for pos < len(records) {
		inv := invoke(h, records[pos:min(pos+batchSize, len(records))])
		st.invocations++
		if each != nil {
			each(inv)
		}
		next := pos + len(inv.batch)
		switch {
		case inv.panicked != nil || inv.err != nil:
			st.crashed++
			next = pos
		case len(inv.resp.BatchItemFailures) > 0:
			st.partial++
			st.reported += len(inv.resp.BatchItemFailures)
			first := -1
			for _, f := range inv.resp.BatchItemFailures {
				i := slices.IndexFunc(inv.batch, func(r events.DynamoDBEventRecord) bool { return r.Change.SequenceNumber == f.ItemIdentifier })
				if i < 0 {
					// Lambda treats an unknown identifier as a failure of the whole batch.
					t.Errorf("batch item failure %q is not a sequence number of the batch", f.ItemIdentifier)
					i = 0
				}
				if first < 0 || i < first {
					first = i
				}
			}
			next = pos + first
		}
		if next == pos {
			retries++
			st.maxRetries = max(st.maxRetries, retries)
			if retries > maxRetries {
				t.Fatalf("records from sequence number %s would go to the on-failure destination after %d retries",
					records[pos].Change.SequenceNumber, retries-1)
			}
		} else {
			retries = 0
		}
		pos = next
	}
	return st
}

func newPublisher(api publisher.API, logs io.Writer) *publisher.Publisher {
	return &publisher.Publisher{
		API: api, BusName: testBus, MaxAttempts: 3,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sleep:  func(context.Context, int) {},
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func auditIDOf(t testing.TB, e ebtypes.PutEventsRequestEntry) string {
	var d struct {
		AuditID string `json:"audit_id"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &d); err != nil || d.AuditID == "" {
		t.Fatalf("entry detail without audit_id: %s", aws.ToString(e.Detail))
	}
	return d.AuditID
}

func seqToAudit(recs []events.DynamoDBEventRecord) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		if v, ok := r.Change.NewImage["audit_id"]; ok && v.DataType() == events.DataTypeString {
			m[r.Change.SequenceNumber] = v.String()
		}
	}
	return m
}

// ---------------------------------------------------------------------------
// 1. A batch of 25 audit rows.

// TestPublishesEachAuditRowOnce: one stream batch holding the 25 audit rows
// of a scenario that makes every kind of audit row, interleaved with the
// images of every other item and with REMOVE records, is put on the bus in
// PutEvents calls of at most 10 entries; each audit row reaches the rule
// target exactly once with its detail type and a detail that is the audit
// row, its id as event_id and the artifact after the change.
func TestPublishesEachAuditRowOnce(t *testing.T) {
	f := newFixture(t)
	f.scenario(0)
	c := f.committed()
	if len(c.audits) != 25 {
		t.Fatalf("scenario committed %d audit rows, want 25", len(c.audits))
	}
	records, removedID := c.records(t)

	// template.yaml's filter hands the publisher exactly the audit INSERTs;
	// the publisher must hold without it too, so it gets everything here.
	m := publisherMapping(t)
	filtered := m.filterRecords(t, records)
	if got, want := seqs(filtered), seqs(onlyAuditInserts(records)); !slices.Equal(got, want) {
		t.Errorf("template stream filter selects %v, want the audit INSERTs %v", got, want)
	}
	if len(records) > m.batchSize {
		t.Fatalf("%d records exceed the mapping's batch size %d", len(records), m.batchSize)
	}

	e := newBus(t)
	var logs syncBuffer
	p := newPublisher(e.client, &logs)
	resp, err := p.Handle(context.Background(), events.DynamoDBEvent{Records: records})
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("Handle: err=%v failures=%v\n%s", err, resp.BatchItemFailures, logs.String())
	}
	calls := e.calls()
	if !slices.Equal(calls, []int{10, 10, 5}) {
		t.Errorf("PutEvents request sizes %v, want [10 10 5]", calls)
	}
	dupAll, dupVer := checkDelivered(t, e, c)
	if dupAll != 0 || dupVer != 0 {
		t.Errorf("duplicates without faults: audit sink %d, verifier %d", dupAll, dupVer)
	}

	got := e.all.received()
	types := map[string]int{}
	lastByArtifact := map[string]detail{}
	for _, ev := range got {
		d := decodeDetail(t, ev)
		if d.AuditID == removedID {
			t.Errorf("the REMOVE record's audit image was published")
		}
		row := c.byID[d.AuditID]
		types[ev.DetailType]++
		checkEvent(t, ev, d, row)
		if d.ArtifactID != nil {
			if prev, ok := lastByArtifact[*d.ArtifactID]; !ok || prev.Artifact.Revision < d.Artifact.Revision {
				lastByArtifact[*d.ArtifactID] = d
			}
		}
	}
	if diff := cmp.Diff(wantDetailTypes, types); diff != "" {
		t.Errorf("events per detail type (-want +got):\n%s", diff)
	}
	// The artifact in each artifact's latest event is the artifact as the API reads it.
	for _, id := range f.artifacts {
		res, err := f.svc.Get(context.Background(), f.admin(), id)
		if err != nil {
			t.Fatal(err)
		}
		ev, ok := lastByArtifact[id]
		if !ok {
			t.Errorf("no event for artifact %s", id)
			continue
		}
		var want, gotA map[string]any
		_ = json.Unmarshal(res.Body, &want)
		b, _ := json.Marshal(ev.Artifact)
		_ = json.Unmarshal(b, &gotA)
		if diff := cmp.Diff(want, gotA); diff != "" {
			t.Errorf("artifact %s in its last event differs from GET (-get +event):\n%s", id, diff)
		}
	}
	t.Logf("records in batch %d (audit INSERTs %d, other images and REMOVEs %d); PutEvents calls %v; delivered: audit sink %d, verifier %d; duplicates 0",
		len(records), len(c.audits), len(records)-len(c.audits), calls, len(got), len(e.verifier.received()))
}

func onlyAuditInserts(recs []events.DynamoDBEventRecord) []events.DynamoDBEventRecord {
	var out []events.DynamoDBEventRecord
	for _, r := range recs {
		if r.EventName == "INSERT" && r.Change.NewImage["entity"].DataType() == events.DataTypeString && r.Change.NewImage["entity"].String() == "audit" {
			out = append(out, r)
		}
	}
	return out
}

func seqs(recs []events.DynamoDBEventRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Change.SequenceNumber)
	}
	return out
}

var detailTypeOf = map[string]string{
	"app_artifact.publish_intent": publisher.DetailIntentCreated,
	"app_artifact.register":       publisher.DetailRegistered,
	"app_artifact.promote":        publisher.DetailPromoted,
	"app_artifact.deprecate":      publisher.DetailDeprecated,
	"app_artifact.retire":         publisher.DetailRetired,
	"app_artifact.revoke":         publisher.DetailTrustChanged,
	"app_artifact.policy_update":  publisher.DetailPolicyUpdated,
}

// checkEvent compares one delivered event with the audit row it came from,
// as the table holds it.
func checkEvent(t *testing.T, ev events.EventBridgeEvent, d detail, row map[string]ddbtypes.AttributeValue) {
	t.Helper()
	if row == nil {
		t.Errorf("event %s carries audit_id %q, which no committed audit row has", ev.ID, d.AuditID)
		return
	}
	action := str(row, "action")
	wantType := detailTypeOf[action]
	if action == "app_artifact.verify" {
		wantType = publisher.DetailTrustChanged
		if afterTrust(row) == "unverified" {
			wantType = publisher.DetailVerificationRequested
		}
	}
	if ev.Source != publisher.Source || ev.DetailType != wantType {
		t.Errorf("%s (%s): source %q detail-type %q, want %q %q", d.AuditID, action, ev.Source, ev.DetailType, publisher.Source, wantType)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(ev.Detail, &keys)
	for _, k := range []string{"audit_id", "event_id", "action", "org_id", "project_id", "artifact_id", "actor", "correlation_id",
		"trace_id", "idempotency_key", "before", "after", "details", "occurred_at", "artifact"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("%s: detail has no %q: %s", d.AuditID, k, ev.Detail)
		}
	}
	if d.EventID != d.AuditID {
		t.Errorf("%s: event_id %q != audit_id", d.AuditID, d.EventID)
	}
	occurred, _ := time.Parse(time.RFC3339Nano, str(row, "occurred_at"))
	wantTrace := str(row, "trace_id")
	got := []string{d.Action, d.OrgID, d.ProjectID, d.CorrelationID, aws.ToString(d.TraceID), d.IdempotencyKey, d.OccurredAt.UTC().Format(time.RFC3339Nano)}
	want := []string{action, str(row, "org_id"), str(row, "project_id"), str(row, "correlation_id"), wantTrace, str(row, "idempotency_key"), occurred.UTC().Format(time.RFC3339Nano)}
	if diff := cmp.Diff(want, got); diff != "" || d.CorrelationID == "" {
		t.Errorf("%s: detail fields (-row +detail):\n%s", d.AuditID, diff)
	}
	if !ev.Time.Equal(occurred.Truncate(time.Second)) {
		t.Errorf("%s: event time %s, want occurred_at %s", d.AuditID, ev.Time, occurred)
	}
	switch action {
	case "app_artifact.publish_intent", "app_artifact.policy_update":
		if d.Before != nil || d.After != nil || d.Artifact != nil || d.ArtifactID != nil {
			t.Errorf("%s (%s): before/after/artifact should be null: %s", d.AuditID, action, ev.Detail)
		}
		if len(ev.Resources) != 0 {
			t.Errorf("%s: resources %v for a row without artifact", d.AuditID, ev.Resources)
		}
		return
	case "app_artifact.register":
		if d.Before != nil || d.After == nil {
			t.Errorf("%s: register: before %v after %v", d.AuditID, d.Before, d.After)
			return
		}
	default:
		if d.Before == nil || d.After == nil {
			t.Errorf("%s: %s: before %v after %v", d.AuditID, action, d.Before, d.After)
			return
		}
	}
	if d.Artifact == nil || d.ArtifactID == nil || d.Artifact.ArtifactID != *d.ArtifactID {
		t.Errorf("%s (%s): detail lacks the artifact after the change: %s", d.AuditID, action, ev.Detail)
		return
	}
	a := d.Artifact
	if got, want := (snapshot{string(a.Lifecycle), string(a.Trust), a.Channels}), *d.After; !cmp.Equal(got, want) {
		t.Errorf("%s (%s): artifact %+v is not the state after the change %+v", d.AuditID, action, got, want)
	}
	if !a.UpdatedAt.Equal(d.OccurredAt) {
		t.Errorf("%s (%s): artifact updated_at %s != occurred_at %s", d.AuditID, action, a.UpdatedAt, d.OccurredAt)
	}
	if want := []string{"gpuaas:app-artifact:" + d.ProjectID + "/" + *d.ArtifactID}; !slices.Equal(ev.Resources, want) {
		t.Errorf("%s: resources %v, want %v", d.AuditID, ev.Resources, want)
	}
}

// TestEventArtifactCarriesSignatureKey: a verification that passed with a
// trusted signature names the key in the audit row's details; the artifact
// after the change, in the event and in the table, must name it too
// (signature_key_id is what channels that require signatures check).
func TestEventArtifactCarriesSignatureKey(t *testing.T) {
	f := newFixture(t)
	f.scenario(0)
	c := f.committed()
	e := newBus(t)
	var logs syncBuffer
	resp, err := newPublisher(e.client, &logs).Handle(context.Background(), events.DynamoDBEvent{Records: onlyAuditInserts(mustRecords(t, c))})
	if err != nil || len(resp.BatchItemFailures) > 0 {
		t.Fatalf("Handle: %v %v", err, resp.BatchItemFailures)
	}
	e.wait(t)
	found := false
	for _, ev := range e.all.received() {
		d := decodeDetail(t, ev)
		if d.Details["signature_key_id"] != signingKeyID {
			continue
		}
		found = true
		if d.Artifact == nil || aws.ToString(d.Artifact.SignatureKeyID) != signingKeyID {
			var got any
			if d.Artifact != nil {
				got = d.Artifact.SignatureKeyID
			}
			t.Errorf("verify event %s: details.signature_key_id = %q but artifact.signature_key_id = %v", d.AuditID, signingKeyID, got)
		}
		a, _, err := f.svc.Store.GetArtifact(context.Background(), testProject, *d.ArtifactID)
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(a.SignatureKeyID) != signingKeyID {
			t.Errorf("artifact %s in the table: signature_key_id %v after a verdict with key %q", a.ArtifactID, a.SignatureKeyID, signingKeyID)
		}
	}
	if !found {
		t.Fatal("no verify event names the signing key")
	}
}

func mustRecords(t testing.TB, c *committed) []events.DynamoDBEventRecord {
	recs, _ := c.records(t)
	return recs
}

// ---------------------------------------------------------------------------
// 2. PutEvents failing 20% of entries.

// flaky wraps the SDK client: each entry of each call fails with an error
// code with probability rate (seeded); the others go to the real bus. It
// tracks, per Lambda invocation, how often each audit row was sent and how
// its last attempt ended.
type flaky struct {
	t    testing.TB
	next publisher.API
	rng  *rand.Rand
	rate float64

	calls, entries, injected, accepted, resends int
	maxCallSize                                 int

	sends      map[string]int  // this invocation
	fails      map[string]int  // this invocation
	lastFailed map[string]bool // this invocation
}

var injectedCodes = []string{"InternalFailure", "ThrottlingException"}

func (f *flaky) begin() {
	f.sends, f.fails, f.lastFailed = map[string]int{}, map[string]int{}, map[string]bool{}
}

func (f *flaky) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.calls++
	f.entries += len(in.Entries)
	f.maxCallSize = max(f.maxCallSize, len(in.Entries))
	out := &eventbridge.PutEventsOutput{Entries: make([]ebtypes.PutEventsResultEntry, len(in.Entries))}
	var pass []ebtypes.PutEventsRequestEntry
	var passIdx []int
	for i, e := range in.Entries {
		id := auditIDOf(f.t, e)
		if f.sends[id] > 0 {
			f.resends++
		}
		f.sends[id]++
		if f.rng.Float64() < f.rate {
			code := injectedCodes[f.rng.Intn(len(injectedCodes))]
			out.Entries[i] = ebtypes.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")}
			out.FailedEntryCount++
			f.injected++
			f.fails[id]++
			f.lastFailed[id] = true
			continue
		}
		f.lastFailed[id] = false
		pass = append(pass, e)
		passIdx = append(passIdx, i)
	}
	if len(pass) > 0 {
		real, err := f.next.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: pass}, opts...)
		if err != nil {
			return nil, err
		}
		for j, r := range real.Entries {
			out.Entries[passIdx[j]] = r
			if r.ErrorCode != nil {
				out.FailedEntryCount++
				id := auditIDOf(f.t, pass[j])
				f.fails[id]++
				f.lastFailed[id] = true
			} else {
				f.accepted++
			}
		}
	}
	return out, nil
}

// TestPutEventsEntryFailuresAreResent: 100 committed audit rows go through
// template.yaml's filter and batch size to a publisher whose PutEvents fails
// 20% of the entries of every call. Within an invocation only the failed
// entries are resent, up to MaxAttempts; what still fails is exactly what
// the invocation reports in BatchItemFailures, by sequence number; Lambda's
// retries from the first failed record deliver everything, and the distinct
// event ids each consumer receives equal the committed audit rows.
func TestPutEventsEntryFailuresAreResent(t *testing.T) {
	f := newFixture(t)
	f.scenario(25)
	c := f.committed()
	m := publisherMapping(t)
	records := m.filterRecords(t, mustRecords(t, c))
	if len(records) != 100 {
		t.Fatalf("%d audit records after the filter, want 100", len(records))
	}
	toAudit := seqToAudit(records)

	for _, tc := range []struct {
		name        string
		seed        int64
		maxAttempts int
	}{
		{"resend up to 3 attempts", 1, 3},
		{"resend up to 3 attempts, other seed", 2, 3},
		{"no resend (1 attempt)", 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBus(t)
			var logs syncBuffer
			fl := &flaky{t: t, next: e.client, rng: rand.New(rand.NewSource(tc.seed)), rate: 0.2}
			p := newPublisher(fl, &logs)
			p.MaxAttempts = tc.maxAttempts
			h := func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				fl.begin()
				return p.Handle(ctx, ev)
			}
			st := runStream(t, h, records, m.batchSize, m.maxRetries, func(inv invocation) {
				if inv.err != nil || inv.panicked != nil {
					t.Errorf("invocation failed as a whole: err=%v panic=%v", inv.err, inv.panicked)
					return
				}
				var wantFailed, gotFailed []string
				for id, n := range fl.sends {
					if fl.lastFailed[id] {
						wantFailed = append(wantFailed, id)
						if n != tc.maxAttempts {
							t.Errorf("%s failed after %d sends, MaxAttempts is %d", id, n, tc.maxAttempts)
						}
					} else if n != fl.fails[id]+1 {
						t.Errorf("%s: sent %d times for %d failures (only failed entries are resent)", id, n, fl.fails[id])
					}
					if n > tc.maxAttempts {
						t.Errorf("%s sent %d times in one invocation, MaxAttempts is %d", id, n, tc.maxAttempts)
					}
				}
				for _, bf := range inv.resp.BatchItemFailures {
					gotFailed = append(gotFailed, toAudit[bf.ItemIdentifier])
				}
				slices.Sort(wantFailed)
				slices.Sort(gotFailed)
				if diff := cmp.Diff(wantFailed, gotFailed); diff != "" {
					t.Errorf("BatchItemFailures != entries whose last attempt failed (-failed +reported):\n%s", diff)
				}
			})
			if fl.maxCallSize > maxEntries || slices.Max(e.calls()) > maxEntries {
				t.Errorf("a PutEvents call had %d entries (server saw %v)", fl.maxCallSize, e.calls())
			}
			if tc.maxAttempts == 1 && st.partial == 0 {
				// At 20% per entry, 100 entries without resends cannot all pass.
				t.Errorf("no invocation reported a batch item failure: the test exercised nothing")
			}
			if tc.maxAttempts > 1 && fl.resends == 0 {
				t.Errorf("no entry was resent within an invocation")
			}
			dupAll, dupVer := checkDelivered(t, e, c)
			delivered := len(e.all.received())
			if delivered != fl.accepted {
				t.Errorf("audit sink got %d events for %d entries the bus accepted", delivered, fl.accepted)
			}
			if dupAll != delivered-len(c.audits) {
				t.Errorf("duplicates %d != delivered %d - committed %d", dupAll, delivered, len(c.audits))
			}
			t.Logf("seed %d, MaxAttempts %d: committed audit rows %d; invocations %d (partial %d, BatchItemFailures %d, most retries of one checkpoint %d of %d allowed); "+
				"PutEvents calls %d, entries sent %d, injected entry failures %d, resends within invocations %d, entries accepted %d; "+
				"delivered: audit sink %d (distinct %d, duplicates %d), verifier %d (duplicates %d)",
				tc.seed, tc.maxAttempts, len(c.audits), st.invocations, st.partial, st.reported, st.maxRetries, m.maxRetries,
				fl.calls, fl.entries, fl.injected, fl.resends, fl.accepted,
				delivered, delivered-dupAll, dupAll, len(e.verifier.received()), dupVer)
		})
	}
}

// ---------------------------------------------------------------------------
// 3. The publisher crashing mid-batch.

// crashing passes the first PutEvents call of the first invocation to the
// real client, then fails every later call of that invocation with fail.
type crashing struct {
	next        publisher.API
	invocation  int
	callsInThis int
	calls       int
	fail        func() error // nil error: pass through
}

func (c *crashing) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	c.calls++
	c.callsInThis++
	if c.invocation == 1 && c.callsInThis > 1 && c.fail != nil {
		if err := c.fail(); err != nil {
			return nil, err
		}
	}
	return c.next.PutEvents(ctx, in, opts...)
}

// TestCrashMidBatch: the publisher loses its connection to EventBridge, or
// dies, after the first chunk of a batch, or EventBridge's answer to a
// committed chunk is lost; Lambda retries as it does, and after dedupe by
// event id nothing is lost.
func TestCrashMidBatch(t *testing.T) {
	f := newFixture(t)
	f.scenario(0)
	c := f.committed()
	m := publisherMapping(t)
	records := m.filterRecords(t, mustRecords(t, c))

	for _, tc := range []struct {
		name string
		fail func() error
		// dropResponse: the server commits request n, then drops the connection.
		dropResponse  func(n int) bool
		wantCrashed   int
		wantReported  int
		wantDuplicate int
	}{
		{
			name: "transport error after the first chunk",
			fail: func() error {
				return fmt.Errorf("operation error EventBridge: PutEvents, https response error: %w",
					&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
			},
			// Chunks 2 and 3 are reported; Lambda resumes at chunk 2.
			wantCrashed: 0, wantReported: 15, wantDuplicate: 0,
		},
		{
			name: "panic after the first chunk",
			fail: func() error { panic("publisher crashed mid-batch") },
			// The whole batch is retried: chunk 1's 10 events twice.
			wantCrashed: 1, wantDuplicate: 10,
		},
		{
			name: "answer to the second chunk lost after the bus committed it",
			// The SDK retries the request: chunk 2's 10 events twice.
			dropResponse: func(n int) bool { return n == 2 },
			wantCrashed:  0, wantDuplicate: 10,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBus(t)
			e.mu.Lock()
			e.dropResponse = tc.dropResponse
			e.mu.Unlock()
			var logs syncBuffer
			cr := &crashing{next: e.client, fail: tc.fail}
			p := newPublisher(cr, &logs)
			h := func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				cr.invocation++
				cr.callsInThis = 0
				return p.Handle(ctx, ev)
			}
			st := runStream(t, h, records, m.batchSize, m.maxRetries, nil)
			if st.crashed != tc.wantCrashed || st.reported != tc.wantReported {
				t.Errorf("crashed invocations %d, batch item failures %d; want %d, %d", st.crashed, st.reported, tc.wantCrashed, tc.wantReported)
			}
			dupAll, dupVer := checkDelivered(t, e, c)
			if dupAll != tc.wantDuplicate {
				t.Errorf("duplicates at the audit sink %d, want %d", dupAll, tc.wantDuplicate)
			}
			if calls := e.calls(); slices.Max(calls) > maxEntries {
				t.Errorf("PutEvents request sizes %v", calls)
			}
			t.Logf("committed %d; invocations %d (crashed %d, partial %d, BatchItemFailures %d); PutEvents calls by the publisher %d, requests at the server %v, answers dropped %d; "+
				"delivered: audit sink %d (duplicates %d), verifier %d (duplicates %d)",
				len(c.audits), st.invocations, st.crashed, st.partial, st.reported, cr.calls, e.calls(), e.dropped,
				len(e.all.received()), dupAll, len(e.verifier.received()), dupVer)
		})
	}
}

// ---------------------------------------------------------------------------
// 4. Undecodable audit images.

// TestUndecodableAuditImageIsReported: audit images that cannot be decoded
// are batch item failures (so Lambda retries them and finally sends them to
// the on-failure destination), never silently skipped, while the readable
// rows around them are published.
func TestUndecodableAuditImageIsReported(t *testing.T) {
	f := newFixture(t)
	f.scenario(0)
	c := f.committed()
	var s streamSeq
	corrupt := func(name string, edit func(map[string]ddbtypes.AttributeValue)) events.DynamoDBEventRecord {
		it := maps.Clone(c.audits[0])
		id := "aud_BAD_" + name
		it["audit_id"] = &ddbtypes.AttributeValueMemberS{Value: id}
		it["SK"] = &ddbtypes.AttributeValueMemberS{Value: id}
		edit(it)
		return s.record(t, "INSERT", it)
	}
	batch := []events.DynamoDBEventRecord{
		s.record(t, "INSERT", c.audits[1]),
		corrupt("ACTOR", func(it map[string]ddbtypes.AttributeValue) {
			it["actor"] = &ddbtypes.AttributeValueMemberS{Value: "alice"}
		}),
		s.record(t, "INSERT", c.audits[2]),
		corrupt("TIME", func(it map[string]ddbtypes.AttributeValue) {
			it["occurred_at"] = &ddbtypes.AttributeValueMemberS{Value: "yesterday"}
		}),
		corrupt("NOID", func(it map[string]ddbtypes.AttributeValue) { delete(it, "audit_id") }),
		corrupt("BEFORE", func(it map[string]ddbtypes.AttributeValue) {
			it["before"] = &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{&ddbtypes.AttributeValueMemberN{Value: "1"}}}
		}),
		s.record(t, "INSERT", c.audits[3]),
	}
	bad := []string{batch[1].Change.SequenceNumber, batch[3].Change.SequenceNumber, batch[4].Change.SequenceNumber, batch[5].Change.SequenceNumber}
	// Each still passes template.yaml's filter: the publisher is what sees it.
	if got := publisherMapping(t).filterRecords(t, batch); len(got) != len(batch) {
		t.Fatalf("filter keeps %d of %d records", len(got), len(batch))
	}

	e := newBus(t)
	var logs syncBuffer
	p := newPublisher(e.client, &logs)
	for round := 1; round <= 2; round++ {
		in := batch
		if round == 2 {
			in = batch[1:] // Lambda's retry from the first failed record
		}
		resp, err := p.Handle(context.Background(), events.DynamoDBEvent{Records: in})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var got []string
		for _, bf := range resp.BatchItemFailures {
			got = append(got, bf.ItemIdentifier)
		}
		slices.Sort(got)
		if diff := cmp.Diff(bad, got); diff != "" {
			t.Errorf("round %d: BatchItemFailures (-undecodable +reported):\n%s\n%s", round, diff, logs.String())
		}
	}
	for _, seq := range bad {
		if !strings.Contains(logs.String(), `"sequence_number":"`+seq+`"`) {
			t.Errorf("no log line names undecodable record %s", seq)
		}
	}
	e.wait(t)
	all, dups := dedupe(t, e.all.received())
	want := []string{str(c.audits[1], "audit_id"), str(c.audits[2], "audit_id"), str(c.audits[3], "audit_id")}
	slices.Sort(want)
	if diff := cmp.Diff(want, sortedKeys(all)); diff != "" {
		t.Errorf("published (-readable rows +got):\n%s", diff)
	}
	t.Logf("batch %d records, undecodable %d reported in both rounds, readable published %d distinct (%d duplicates from the retry round)",
		len(batch), len(bad), len(all), dups)
}
