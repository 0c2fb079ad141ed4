package httpapi_test

// Fault injection on every DynamoDB call of every route (issue 6, item 1).
//
// The API runs as in newEnv (every route's real handler over minidyn through
// the real aws-sdk-go-v2 client), but the client carries one more API option:
// a per-attempt Finalize middleware that picks the Nth call of an operation
// and makes it fail, and an HTTP client under it that produces the failure the
// way DynamoDB or the network would (an HTTP 400/500/503 with DynamoDB's
// __type, minidyn's own failure emulation, a context deadline, a read
// timeout, a TransactionCanceledException, or a response lost after the
// server applied the write). Each case then holds the request to SPEC
// sections 4 (errors), 6 (idempotency) and 7 (audit):
//
//   - throttling, unavailability and timeouts answer 503 service_unavailable
//     with Retry-After, and the table is byte for byte what it was;
//   - a transaction conflict is retried inside and never surfaces as a 5xx;
//   - a retry with the same idempotency key afterwards runs exactly once (one
//     transition, one audit row), and a further retry replays it byte for
//     byte with Idempotent-Replayed: true, writing nothing.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	miniserver "github.com/truora/minidyn/server"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/obs"
)

// DynamoDB operations the routes call.
const (
	opQuery    = "Query"
	opBatchGet = "BatchGetItem"
	opTransact = "TransactWriteItems"
)

// faultName is one way a DynamoDB call fails.
type faultName string

const (
	// HTTP 400 ProvisionedThroughputExceededException; nothing applied.
	faultThrottle faultName = "throttle"
	// HTTP 400 ThrottlingException (on-demand tables); nothing applied.
	faultThrottling faultName = "throttling"
	// A smithy.GenericAPIError RequestLimitExceeded returned by the middleware
	// itself (the account's request limit); nothing sent.
	faultRequestLimit faultName = "request-limit"
	// minidyn's own failure emulation for the table: HTTP 500 InternalServerError.
	fault5xx faultName = "5xx"
	// HTTP 503 ServiceUnavailable; nothing applied.
	fault503 faultName = "503"
	// The call's context deadline passes before any answer; never sent.
	faultTimeout faultName = "timeout"
	// A slow response: the transport gives up with a read timeout.
	faultSlow faultName = "slow"
	// BatchGetItem leaves every key unprocessed, on every call of the request.
	faultUnprocessed faultName = "unprocessed"
	// BatchGetItem leaves every key unprocessed once; the store asks again.
	faultUnprocessedOnce faultName = "unprocessed-once"
	// BatchGetItem answers some keys and leaves the first key and any
	// idempotency record unprocessed, once; the store asks for the rest.
	faultUnprocessedPartial faultName = "unprocessed-partial"
	// TransactionCanceledException [TransactionConflict] once.
	faultConflict faultName = "conflict"
	// TransactionCanceledException [TransactionConflict] on every attempt.
	faultConflictPersistent faultName = "conflict-persistent"
	// TransactionCanceledException [ThrottlingError].
	faultTxnThrottle faultName = "txn-throttle"
	// The transaction commits, then the client's deadline passes before the answer.
	faultTimeoutAfterCommit faultName = "timeout-after-commit"
	// The transaction commits, then the answer is an HTTP 500.
	fault5xxAfterCommit faultName = "5xx-after-commit"
)

// faultOutcome is what the SPEC says a request under the fault answers.
type faultOutcome int

const (
	// 503 service_unavailable with Retry-After; the table unchanged.
	outUnavailable faultOutcome = iota
	// The service absorbs the fault: the request succeeds exactly once.
	outAbsorbed
	// Never a 5xx: 409 concurrent_update, the table unchanged.
	outRefused
	// The write committed but its answer was lost: 503; the retry replays it.
	outCommitted
)

type faultSpec struct {
	name    faultName
	ops     []string // operations it applies to
	sticky  bool     // every matching call of the request, not just the first
	outcome faultOutcome
}

var allOps = []string{opQuery, opBatchGet, opTransact}

var faultSpecs = []faultSpec{
	{faultThrottle, allOps, false, outUnavailable},
	{faultThrottling, allOps, false, outUnavailable},
	{faultRequestLimit, allOps, false, outUnavailable},
	{fault5xx, allOps, false, outUnavailable},
	{fault503, allOps, false, outUnavailable},
	{faultTimeout, allOps, false, outUnavailable},
	{faultSlow, allOps, false, outUnavailable},
	{faultUnprocessed, []string{opBatchGet}, true, outUnavailable},
	{faultUnprocessedOnce, []string{opBatchGet}, false, outAbsorbed},
	{faultUnprocessedPartial, []string{opBatchGet}, false, outAbsorbed},
	{faultConflict, []string{opTransact}, false, outAbsorbed},
	{faultConflictPersistent, []string{opTransact}, true, outRefused},
	{faultTxnThrottle, []string{opTransact}, false, outUnavailable},
	{faultTimeoutAfterCommit, []string{opTransact}, false, outCommitted},
	{fault5xxAfterCommit, []string{opTransact}, false, outCommitted},
}

func (f faultSpec) appliesTo(op string) bool {
	for _, o := range f.ops {
		if o == op {
			return true
		}
	}
	return false
}

// faultCallTimeout is the deadline a timed-out call gets.
const faultCallTimeout = 10 * time.Millisecond

type faultCtxKey struct{}

// faultRule fails the nth call (1-based) of op, or with sticky every
// call from the nth on.
type faultRule struct {
	op     string
	nth    int
	name   faultName
	sticky bool
}

// faultInjector decides which call fails and how. One per env; armed only
// around the request under test.
type faultInjector struct {
	table string

	mu    sync.Mutex
	rules []faultRule
	seen  map[string]int
	fired int
}

func (in *faultInjector) arm(rules ...faultRule) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules, in.seen, in.fired = rules, map[string]int{}, 0
}

// disarm stops injecting and reports how many calls failed.
func (in *faultInjector) disarm() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules = nil
	return in.fired
}

func (in *faultInjector) decide(op string) faultName {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.rules) == 0 {
		return ""
	}
	in.seen[op]++
	n := in.seen[op]
	for _, r := range in.rules {
		if r.op == op && (n == r.nth || (r.sticky && n > r.nth)) {
			in.fired++
			return r.name
		}
	}
	return ""
}

// middleware runs per attempt (Finalize, after the retry middleware), so a
// retried call counts again.
func (in *faultInjector) middleware(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("test.FaultInjector",
		func(ctx context.Context, input middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			f := in.decide(awsmiddleware.GetOperationName(ctx))
			switch f {
			case "":
				return next.HandleFinalize(ctx, input)
			case faultRequestLimit:
				return middleware.FinalizeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{
					Code: "RequestLimitExceeded", Message: "injected: throughput exceeds the account limit", Fault: smithy.FaultClient}
			case faultTimeout, faultTimeoutAfterCommit:
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, faultCallTimeout)
				defer cancel()
			}
			return next.HandleFinalize(context.WithValue(ctx, faultCtxKey{}, f), input)
		}), middleware.After)
}

// faultHTTP is the HTTP client under the SDK: it passes calls to the real
// one, or answers as the injected fault says.
type faultHTTP struct {
	next dynamodb.HTTPClient
	in   *faultInjector
}

func ddbErrorResponse(req *http.Request, status int, typ string, extra map[string]any) *http.Response {
	body := map[string]any{"__type": "com.amazonaws.dynamodb.v20120810#" + typ, "message": "injected " + typ}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("X-Amzn-Requestid", "injected-fault")
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(strings.NewReader(string(b))), ContentLength: int64(len(b)), Request: req,
	}
}

// cancellation answers a TransactionCanceledException whose reasons name
// code on the first item of the transaction (DynamoDB reports one reason
// per item, in order).
func cancellation(req *http.Request, code string) (*http.Response, error) {
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var in struct{ TransactItems []json.RawMessage }
	if err := json.Unmarshal(raw, &in); err != nil || len(in.TransactItems) == 0 {
		return nil, fmt.Errorf("fault: cannot read the transaction: %v", err)
	}
	reasons := make([]map[string]string, len(in.TransactItems))
	for i := range reasons {
		reasons[i] = map[string]string{"Code": "None"}
	}
	reasons[0] = map[string]string{"Code": code, "Message": "injected " + code}
	return ddbErrorResponse(req, 400, "TransactionCanceledException", map[string]any{
		"Message": "Transaction cancelled, please refer cancellation reasons for specific reasons", "CancellationReasons": reasons,
	}), nil
}

func drain(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

func (c *faultHTTP) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	f, _ := ctx.Value(faultCtxKey{}).(faultName)
	switch f {
	case faultThrottle:
		return ddbErrorResponse(req, 400, "ProvisionedThroughputExceededException", nil), nil
	case faultThrottling:
		return ddbErrorResponse(req, 400, "ThrottlingException", nil), nil
	case fault503:
		return ddbErrorResponse(req, 503, "ServiceUnavailable", nil), nil
	case fault5xx:
		// The server itself fails the call (scoped to this env's table).
		mini.Mini.EmulateFailureForTable(c.in.table, miniserver.FailureConditionInternalServerError)
		defer mini.Mini.EmulateFailureForTable(c.in.table, miniserver.FailureConditionNone)
		return c.next.Do(req)
	case faultUnprocessed, faultUnprocessedOnce:
		mini.Mini.EmulateUnprocessedItems(c.in.table, func(int, map[string]*miniserver.AttributeValue) bool { return true })
		defer mini.Mini.EmulateUnprocessedItems(c.in.table, nil)
		return c.next.Do(req)
	case faultUnprocessedPartial:
		mini.Mini.EmulateUnprocessedItems(c.in.table, func(n int, key map[string]*miniserver.AttributeValue) bool {
			pk := key["PK"]
			return n == 0 || (pk != nil && pk.S != nil && strings.HasPrefix(*pk.S, "IDEMP#"))
		})
		defer mini.Mini.EmulateUnprocessedItems(c.in.table, nil)
		return c.next.Do(req)
	case faultTimeout:
		<-ctx.Done()
		return nil, ctx.Err()
	case faultSlow:
		time.Sleep(2 * time.Millisecond)
		return nil, &url.Error{Op: "Post", URL: req.URL.String(), Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}
	case faultConflict, faultConflictPersistent:
		return cancellation(req, "TransactionConflict")
	case faultTxnThrottle:
		return cancellation(req, "ThrottlingError")
	case faultTimeoutAfterCommit:
		// The server gets the whole request and applies it; the answer
		// arrives after the caller stopped waiting.
		resp, err := c.next.Do(req.WithContext(context.WithoutCancel(ctx)))
		if err != nil {
			return nil, err
		}
		drain(resp)
		<-ctx.Done()
		return nil, ctx.Err()
	case fault5xxAfterCommit:
		resp, err := c.next.Do(req)
		if err != nil {
			return nil, err
		}
		drain(resp)
		return ddbErrorResponse(req, 500, "InternalServerError", nil), nil
	}
	return c.next.Do(req)
}

type zeroBackoff struct{}

func (zeroBackoff) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// newTableEnv is newEnv over a table from faultTable, its client built
// with opts besides the call counter.
func newTableEnv(t testing.TB, opts ...func(*dynamodb.Options)) *env {
	t.Helper()
	e := &env{t: t, table: faultTable(t), logs: &syncBuffer{}, handlers: map[string]*httpapi.Handler{}}
	e.ddb = mini.Client(append([]func(*dynamodb.Options){app.DynamoDBOptions}, opts...)...)
	cfg := &app.Config{TableName: e.table, RegistryHost: registryHost, CursorSecret: strings.Repeat("k", 32), Stage: "test"}
	svc, err := app.NewService(cfg, e.ddb)
	if err != nil {
		t.Fatal(err)
	}
	svc.Sleep = func(context.Context, int) {}
	for _, rt := range httpapi.Routes {
		e.handlers[rt.Name] = &httpapi.Handler{
			Route: rt, Service: svc, Logger: obs.NewLogger(e.logs, rt.Name),
			NewCorrelationID: func() string { return app.NewID("cid") }, Now: time.Now,
		}
	}
	return e
}

// newFaultEnv is newEnv over a client that injects faults. sdkRetries 1
// turns SDK retries off, so each injected fault reaches the service; more
// is the production standard retryer without waits.
func newFaultEnv(t testing.TB, sdkRetries int) (*env, *faultInjector) {
	t.Helper()
	in := &faultInjector{}
	e := newTableEnv(t, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, in.middleware)
		o.HTTPClient = &faultHTTP{next: o.HTTPClient, in: in}
		if sdkRetries <= 1 {
			o.Retryer = aws.NopRetryer{}
		} else {
			o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts, so.Backoff, so.RateLimiter = sdkRetries, zeroBackoff{}, ratelimit.None
			})
		}
	})
	in.table = e.table
	e.faulty = true
	return e, in
}

var (
	faultTableOnce  sync.Once
	faultTableInput *dynamodb.CreateTableInput
	faultTableErr   error
	faultTables     atomic.Int64
)

// faultTable creates a fresh table shaped like template.yaml's, as
// mini.NewTable does, but reads the template once: parsing it is most of the
// cost of a table, and the fault matrix makes one per case. minidyn's
// CreateTable and DeleteTable write its table map without its lock: call it
// only while no request runs.
func faultTable(t testing.TB) string {
	t.Helper()
	faultTableOnce.Do(func() {
		faultTableInput, faultTableErr = ddbtest.Template(t).CreateTableInput(ddbtest.TableLogicalID, "template")
	})
	if faultTableErr != nil {
		t.Fatalf("faultTable: %v", faultTableErr)
	}
	in := *faultTableInput
	name := fmt.Sprintf("faults-%d", faultTables.Add(1))
	in.TableName = aws.String(name)
	if _, err := mini.Client().CreateTable(context.Background(), &in); err != nil {
		t.Fatalf("faultTable: %v", err)
	}
	// Dropped at the end, so hundreds of cases do not pile up in minidyn's memory.
	t.Cleanup(func() {
		_, _ = mini.Client().DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

var faultScanClient = sync.OnceValue(func() *dynamodb.Client { return mini.Client() })

// faultScan reads the whole table, page by page, with a clean client.
func faultScan(t testing.TB, table string) []map[string]types.AttributeValue {
	t.Helper()
	var out []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	for {
		page, err := faultScanClient().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ExclusiveStartKey: start})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		out = append(out, page.Items...)
		if len(page.LastEvaluatedKey) == 0 {
			return out
		}
		start = page.LastEvaluatedKey
	}
}

func faultAttr(item map[string]types.AttributeValue, k string) string {
	switch v := item[k].(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	}
	return ""
}

// faultCounts is what a mutation may change: rows per entity, and the
// audit rows carrying a given idempotency key.
func faultCounts(t testing.TB, table, key string) (entities map[string]int, keyAudits []map[string]types.AttributeValue) {
	entities = map[string]int{}
	for _, it := range faultScan(t, table) {
		entities[faultAttr(it, "entity")]++
		if faultAttr(it, "entity") == "audit" && key != "" && faultAttr(it, "idempotency_key") == key {
			keyAudits = append(keyAudits, it)
		}
	}
	return entities, keyAudits
}

// faultRoute is one route under test: its DynamoDB calls in order, and
// how to set up state it succeeds from.
type faultRoute struct {
	name    string
	route   string
	ops     []string
	as      who
	body    string
	status  int    // success status
	action  string // audit action of a success; "" for reads
	entity  string // entity a success adds ("" if it only updates)
	prepare func(e *env) string
	// writeRetry: after a transaction conflict the route tries its write
	// again without reading again (what it read cannot change the write).
	writeRetry bool
}

var faultTrustAdmin = platform("trust_admin")

func faultRoutes() []faultRoute {
	registered := func(e *env) string { return e.register(projectA) }
	return []faultRoute{
		{name: "list", route: "list-artifacts", ops: []string{opQuery}, as: viewer(projectA), status: 200,
			prepare: func(e *env) string { e.register(projectA); e.register(projectA); return "" }},
		{name: "get", route: "get-artifact", ops: []string{opBatchGet}, as: viewer(projectA), status: 200, prepare: registered},
		{name: "get-intent", route: "get-publish-intent", ops: []string{opBatchGet}, as: viewer(projectA), status: 200,
			prepare: func(e *env) string { return e.intent(projectA) }},
		{name: "policy-get", route: "get-artifact-policy", ops: []string{opBatchGet}, as: admin(projectA), status: 200,
			prepare: func(e *env) string { e.register(projectA); return "" }},
		{name: "artifact-audit", route: "list-artifact-audit-events", ops: []string{opBatchGet, opQuery}, as: admin(projectA), status: 200,
			prepare: registered},
		{name: "audit", route: "list-audit-events", ops: []string{opBatchGet, opQuery}, as: platform("operator"), status: 200,
			prepare: func(e *env) string { e.register(projectA); e.register(projectA); return "" }},
		{name: "publish-intent", route: "create-publish-intent", ops: []string{opBatchGet, opTransact}, as: dev(projectA), status: 201,
			body:   `{"app_slug":"fault-app","app_version":"3.1.4","artifact_kind":"container_image","source_type":"platform_push"}`,
			action: "app_artifact.publish_intent", entity: "publish_intent", prepare: func(*env) string { return "" }, writeRetry: true},
		{name: "register", route: "register-artifact", ops: []string{opTransact}, as: dev(projectA), status: 201,
			body:   registerBody(projectA, "fault-app", "3.1.4", digest(31415926)),
			action: "app_artifact.register", entity: "artifact", prepare: func(*env) string { return "" }},
		{name: "promote", route: "promote-artifact", ops: []string{opBatchGet, opTransact}, as: dev(projectA), status: 200,
			body: `{"channel":"dev"}`, action: "app_artifact.promote", prepare: registered},
		{name: "deprecate", route: "deprecate-artifact", ops: []string{opBatchGet, opTransact}, as: dev(projectA), status: 200,
			body: `{"reason":"superseded"}`, action: "app_artifact.deprecate", prepare: registered},
		{name: "retire", route: "retire-artifact", ops: []string{opBatchGet, opTransact}, as: admin(projectA), status: 200,
			body: `{"reason":"end of life"}`, action: "app_artifact.retire",
			prepare: func(e *env) string {
				id := e.register(projectA)
				if r := e.do(req{route: "deprecate-artifact", as: admin(projectA), artifact: id, body: `{}`}); r.status != 200 {
					e.t.Fatalf("deprecate: %d %s", r.status, r.body)
				}
				return id
			}},
		{name: "revoke", route: "revoke-artifact", ops: []string{opBatchGet, opTransact}, as: faultTrustAdmin, status: 200,
			body: `{"reason":"key compromised"}`, action: "app_artifact.revoke", prepare: registered},
		{name: "verify", route: "verify-artifact", ops: []string{opBatchGet, opTransact}, as: faultTrustAdmin, status: 202,
			body: `{"reason":"registry fixed"}`, action: "app_artifact.verify",
			prepare: func(e *env) string {
				id := e.register(projectA)
				e.setTrust(projectA, id, "failed_verification")
				return id
			}},
		{name: "policy-put", route: "put-artifact-policy", ops: []string{opBatchGet, opTransact}, as: faultTrustAdmin, status: 200,
			body: defaultPolicyBody, action: "app_artifact.policy_update",
			prepare: func(e *env) string { e.register(projectA); return "" }},
	}
}

// faultRevision is the revision a success moves, read without faults:
// the artifact's or the policy's.
func faultRevision(e *env, fr faultRoute, target string) float64 {
	switch {
	case fr.route == "put-artifact-policy":
		r := e.do(req{route: "get-artifact-policy", as: admin(projectA)})
		n, _ := r.json["revision"].(float64)
		return n
	case target != "" && fr.action != "":
		r := e.do(req{route: "get-artifact", as: admin(projectA), artifact: target})
		n, _ := r.json["revision"].(float64)
		return n
	}
	return 0
}

func checkUnavailable(t *testing.T, r resp) {
	t.Helper()
	if r.status != 503 || r.errCode() != "service_unavailable" {
		t.Fatalf("want 503 service_unavailable, got %d %s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.headers["Retry-After"]); err != nil || s < 1 {
		t.Fatalf("503 without a usable Retry-After (%q)", r.headers["Retry-After"])
	}
}

// faultCase is one request under one schedule of faults.
type faultCase struct {
	rules   []faultRule
	outcome faultOutcome
	// calls is the number of DynamoDB calls the failed request made (a
	// failure calls nothing after the failed call); 0 leaves it unchecked.
	calls int
}

// faultCombos are schedules of two faults in one request: a conflict the
// service retries, then a second fault on the attempt after it.
func faultCombos(fr faultRoute) map[string]faultCase {
	if len(fr.ops) == 2 && !fr.writeRetry { // read, then write, then (after a conflict) read again
		return map[string]faultCase{
			"conflict-then-throttle":             {[]faultRule{{opTransact, 1, faultConflict, false}, {opBatchGet, 2, faultThrottle, false}}, outUnavailable, 3},
			"conflict-then-timeout":              {[]faultRule{{opTransact, 1, faultConflict, false}, {opTransact, 2, faultTimeout, false}}, outUnavailable, 4},
			"conflict-then-timeout-after-commit": {[]faultRule{{opTransact, 1, faultConflict, false}, {opTransact, 2, faultTimeoutAfterCommit, false}}, outCommitted, 4},
		}
	}
	// The write alone is tried again (after whatever was read once).
	n := len(fr.ops) + 1
	return map[string]faultCase{
		"conflict-then-throttle":         {[]faultRule{{opTransact, 1, faultConflict, false}, {opTransact, 2, faultThrottle, false}}, outUnavailable, n},
		"conflict-then-5xx-after-commit": {[]faultRule{{opTransact, 1, faultConflict, false}, {opTransact, 2, fault5xxAfterCommit, false}}, outCommitted, n},
	}
}

// faultFigures counts what the matrix covered, for the log and RELIABILITY.md.
type faultFigures struct {
	cases, unavailable, absorbed, refused, committed int
	injected, retries, replays, replaysUnderFault    int
}

func (f *faultFigures) add(o faultOutcome) {
	f.cases++
	switch o {
	case outUnavailable:
		f.unavailable++
	case outAbsorbed:
		f.absorbed++
	case outRefused:
		f.refused++
	case outCommitted:
		f.committed++
	}
}

// TestFaultsPerDynamoDBCall injects each fault on each DynamoDB call of
// each route (and two-fault schedules on each mutation), SDK retries off
// so every injected fault reaches the service.
func TestFaultsPerDynamoDBCall(t *testing.T) {
	figs := &faultFigures{}
	start := time.Now()
	// Sequential: minidyn's CreateTable writes its table map without its
	// lock, so cases cannot make tables while others run.
	for _, fr := range faultRoutes() {
		t.Run(fr.name, func(t *testing.T) {
			for pos, op := range fr.ops {
				for _, fs := range faultSpecs {
					if !fs.appliesTo(op) {
						continue
					}
					calls := pos + 1
					if fs.name == faultUnprocessed {
						calls = 5 // the store re-asks unprocessed keys a bounded number of times
					}
					c := faultCase{[]faultRule{{op, 1, fs.name, fs.sticky}}, fs.outcome, calls}
					t.Run(fmt.Sprintf("%s/%s", op, fs.name), func(t *testing.T) { runFaultCase(t, figs, fr, c) })
				}
			}
			if fr.action == "" {
				return
			}
			for name, c := range faultCombos(fr) {
				t.Run(opTransact+"/"+name, func(t *testing.T) { runFaultCase(t, figs, fr, c) })
			}
		})
	}
	t.Logf("fault matrix: %d cases, %d faults injected: %d answered 503 with nothing written, %d absorbed by the service's own retry, "+
		"%d refused 409 with nothing written, %d committed with the answer lost; then %d same-key retries, %d byte-identical replays, "+
		"%d replays under the same fault writing nothing; %v",
		figs.cases, figs.injected, figs.unavailable, figs.absorbed, figs.refused, figs.committed, figs.retries, figs.replays,
		figs.replaysUnderFault, time.Since(start).Round(time.Millisecond))
}

func runFaultCase(t *testing.T, figs *faultFigures, fr faultRoute, c faultCase) {
	e, inj := newFaultEnv(t, 1)
	target := fr.prepare(e)
	r := req{route: fr.route, as: fr.as, artifact: target, body: fr.body}
	mutation := fr.action != ""
	if mutation {
		r.idemKey = "fault-key-0001"
	}
	var baseline resp
	if !mutation {
		baseline = e.do(r)
		if baseline.status != fr.status {
			t.Fatalf("baseline %d %s", baseline.status, baseline.body)
		}
	}
	before := e.dump()
	ents, _ := faultCounts(t, e.table, "")
	rev := faultRevision(e, fr, target)

	inj.arm(c.rules...)
	first := e.do(r)
	fired := inj.disarm()
	calls := e.lastCalls()
	if fired < len(c.rules) {
		t.Fatalf("%d of %d faults injected: the route does not make the call (%d calls)", fired, len(c.rules), calls)
	}
	figs.injected += fired
	figs.add(c.outcome)

	// oneChange holds the table to exactly one success of r since before.
	oneChange := func(stage string) {
		t.Helper()
		now, keyed := faultCounts(t, e.table, r.idemKey)
		if now["audit"] != ents["audit"]+1 || len(keyed) != 1 || faultAttr(keyed[0], "action") != fr.action {
			t.Fatalf("%s: want exactly one %s audit row for the key; audit rows %d -> %d, with the key %d", stage, fr.action, ents["audit"], now["audit"], len(keyed))
		}
		if now["idempotency"] != ents["idempotency"]+1 {
			t.Fatalf("%s: idempotency records %d -> %d, want +1", stage, ents["idempotency"], now["idempotency"])
		}
		if fr.entity != "" && now[fr.entity] != ents[fr.entity]+1 {
			t.Fatalf("%s: %s rows %d -> %d, want +1", stage, fr.entity, ents[fr.entity], now[fr.entity])
		}
		if got := faultRevision(e, fr, target); fr.entity == "" && got != rev+1 {
			t.Fatalf("%s: revision %v -> %v, want one transition", stage, rev, got)
		}
	}
	// replay sends r again and wants want back byte for byte, replayed,
	// with nothing written: the table stays dump.
	replay := func(want resp, dump string) {
		t.Helper()
		again := e.do(r)
		figs.retries++
		if again.status != want.status || again.body != want.body || again.headers["Idempotent-Replayed"] != "true" {
			t.Fatalf("further retry: want the first answer replayed, got %d replayed=%q\n%s\nfirst:\n%s",
				again.status, again.headers["Idempotent-Replayed"], again.body, want.body)
		}
		if e.dump() != dump {
			t.Fatal("a replay wrote to the table")
		}
		figs.replays++
	}
	// replayUnderFault retries once more under the same faults: whatever it
	// answers, it writes nothing, and a 2xx is the first answer replayed.
	replayUnderFault := func(want resp, dump string) {
		t.Helper()
		inj.arm(c.rules...)
		again := e.do(r)
		inj.disarm()
		figs.retries++
		switch {
		case again.status == want.status:
			if again.body != want.body || again.headers["Idempotent-Replayed"] != "true" {
				t.Fatalf("replay under the fault: not the first answer:\n%s\nfirst:\n%s", again.body, want.body)
			}
			figs.replays++
		case again.status == 503:
			checkUnavailable(t, again)
		case again.status == 409 && again.reason() == "concurrent_update" && c.outcome == outRefused:
		default:
			t.Fatalf("replay under the fault answered %d %s", again.status, again.body)
		}
		if e.dump() != dump {
			t.Fatal("a retry under the fault wrote to the table")
		}
		figs.replaysUnderFault++
		replay(want, dump)
	}

	// settled holds the table to one success of r whose answer is answer,
	// then retries: replays of it, with and without the fault.
	settled := func(stage string, answer resp) {
		t.Helper()
		oneChange(stage)
		dump := e.dump()
		replay(answer, dump)
		replayUnderFault(answer, dump)
	}
	// sameRead holds a read to its answer before the fault, table unchanged.
	sameRead := func(got resp, what string) {
		t.Helper()
		if got.body != baseline.body || e.dump() != before {
			t.Fatalf("%s differs:\n%s\n%s", what, got.body, baseline.body)
		}
	}

	switch c.outcome {
	case outUnavailable:
		checkUnavailable(t, first)
		if c.calls != 0 && calls != c.calls {
			t.Fatalf("dynamodb_calls %d, want %d: nothing may be called after the failed call", calls, c.calls)
		}
		if e.dump() != before {
			t.Fatal("the failed request changed the table")
		}
	case outRefused:
		if first.status != 409 || first.errCode() != "app_artifact_state_invalid" || first.reason() != "concurrent_update" {
			t.Fatalf("persistent transaction conflict: want 409 app_artifact_state_invalid/concurrent_update (never 5xx), got %d %s", first.status, first.body)
		}
		if e.dump() != before {
			t.Fatal("the refused request changed the table")
		}
		t.Logf("persistent conflict: 409 %s after %d DynamoDB calls", first.reason(), calls)
	case outAbsorbed:
		if first.status != fr.status || first.headers["Idempotent-Replayed"] != "" {
			t.Fatalf("want the fault absorbed and %d, got %d replayed=%q %s", fr.status, first.status, first.headers["Idempotent-Replayed"], first.body)
		}
		if !mutation {
			sameRead(first, "read after an absorbed fault")
			return
		}
		settled("first request", first)
		return
	case outCommitted:
		checkUnavailable(t, first)
		oneChange("committed, answer lost")
		dump := e.dump()
		again := e.do(r)
		figs.retries++
		if again.status != fr.status || again.headers["Idempotent-Replayed"] != "true" {
			t.Fatalf("retry after a lost answer: want the committed %d replayed, got %d replayed=%q %s", fr.status, again.status, again.headers["Idempotent-Replayed"], again.body)
		}
		figs.replays++
		if e.dump() != dump {
			t.Fatal("the retry after a lost answer wrote to the table")
		}
		oneChange("after the retry")
		replay(again, dump)
		replayUnderFault(again, dump)
		return
	}

	// The fault wrote nothing, so the same request (same key) runs again,
	// once, and then replays.
	again := e.do(r)
	figs.retries++
	if again.status != fr.status || again.headers["Idempotent-Replayed"] != "" {
		t.Fatalf("retry with the same key: want a first run %d, got %d replayed=%q %s", fr.status, again.status, again.headers["Idempotent-Replayed"], again.body)
	}
	if !mutation {
		sameRead(again, "read after the fault (from before it)")
		return
	}
	settled("retry", again)
}

// TestFaultsSDKRetry runs the production retryer (standard, 3 attempts;
// here without waits): a single throttle or 5xx is absorbed by the SDK and
// the request succeeds exactly once; a fault that outlasts the attempts is a
// 503 with nothing written; a 5xx after a commit is retried by the SDK and
// still gives one transition and one audit row.
func TestFaultsSDKRetry(t *testing.T) {
	routes := map[string]faultRoute{}
	for _, fr := range faultRoutes() {
		routes[fr.name] = fr
	}
	type sdkCase struct {
		name   faultName
		sticky bool
		ops    []string
	}
	cases := []sdkCase{
		{faultThrottle, false, allOps}, {faultThrottle, true, allOps},
		{fault5xx, false, allOps}, {fault5xx, true, allOps},
		{fault5xxAfterCommit, false, []string{opTransact}},
	}
	n := 0
	for _, name := range []string{"register", "promote", "revoke", "policy-put", "get", "list"} {
		fr := routes[name]
		for pos, op := range fr.ops {
			for _, c := range cases {
				if !(faultSpec{ops: c.ops}).appliesTo(op) {
					continue
				}
				label := string(c.name)
				if c.sticky {
					label += "-persistent"
				}
				n++
				t.Run(fmt.Sprintf("%s/%s/%s", fr.name, op, label), func(t *testing.T) {
					e, inj := newFaultEnv(t, 3)
					target := fr.prepare(e)
					r := req{route: fr.route, as: fr.as, artifact: target, body: fr.body}
					if fr.action != "" {
						r.idemKey = "sdk-retry-key-" + label
					}
					before := e.dump()
					ents, _ := faultCounts(t, e.table, "")
					inj.arm(faultRule{op, 1, c.name, c.sticky})
					first := e.do(r)
					fired := inj.disarm()
					calls := e.lastCalls()
					if c.sticky {
						checkUnavailable(t, first)
						if fired != 3 || calls != pos+3 {
							t.Fatalf("want the SDK to try %s 3 times (fired %d, dynamodb_calls %d)", op, fired, calls)
						}
						if e.dump() != before {
							t.Fatal("the failed request changed the table")
						}
						again := e.do(r)
						if again.status != fr.status || again.headers["Idempotent-Replayed"] != "" {
							t.Fatalf("retry: %d %s", again.status, again.body)
						}
					} else {
						if first.status != fr.status {
							t.Fatalf("want a single %s absorbed by the SDK, got %d %s", c.name, first.status, first.body)
						}
						if fired != 1 || calls != len(fr.ops)+1 {
							t.Fatalf("fired %d, dynamodb_calls %d; want 1 and %d", fired, calls, len(fr.ops)+1)
						}
						if c.name == fault5xxAfterCommit {
							t.Logf("5xx after commit, SDK retry: %d Idempotent-Replayed=%q", first.status, first.headers["Idempotent-Replayed"])
						}
					}
					if fr.action == "" {
						if e.dump() != before {
							t.Fatal("a read changed the table")
						}
						return
					}
					now, keyed := faultCounts(t, e.table, r.idemKey)
					if now["audit"] != ents["audit"]+1 || len(keyed) != 1 {
						t.Fatalf("audit rows %d -> %d (%d with the key), want exactly one", ents["audit"], now["audit"], len(keyed))
					}
				})
			}
		}
	}
	t.Logf("%d cases with the SDK's standard retryer", n)
}
