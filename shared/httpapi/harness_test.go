package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/internal/contracttest"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

const (
	registryHost = "127.0.0.1:5000"
	projectA     = "proj-alpha"
	projectB     = "proj-beta"
	orgA         = "org-acme"
	orgB         = "org-umbrella"
)

var (
	mini *ddbtest.Server
	doc  *contracttest.Doc
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	t := &mainTB{}
	mini = ddbtest.Start(t)
	doc = contracttest.Load(t)
	defer t.cleanup()
	if t.failed {
		return 1
	}
	return m.Run()
}

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// env is one isolated API over its own table.
type env struct {
	t        testing.TB
	table    string
	ddb      *dynamodb.Client
	handlers map[string]*httpapi.Handler
	svc      *lifecycle.Service
	logs     *syncBuffer
	seq      atomic.Int64
	// skipContract turns off response validation (benchmarks measure the
	// handler, not kin-openapi).
	skipContract bool
	// faulty: DynamoDB faults are injected, so a 503 is expected and its
	// internal error is not logged (a soak run would log thousands).
	faulty bool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, table: mini.NewTable(t), logs: &syncBuffer{}, handlers: map[string]*httpapi.Handler{}}
	e.ddb = mini.Client(app.DynamoDBOptions)
	cfg := &app.Config{TableName: e.table, RegistryHost: registryHost, CursorSecret: strings.Repeat("k", 32), Stage: "test"}
	svc, err := app.NewService(cfg, e.ddb)
	if err != nil {
		t.Fatal(err)
	}
	svc.Sleep = func(context.Context, int) { time.Sleep(time.Millisecond) }
	e.svc = svc
	for _, rt := range httpapi.Routes {
		e.handlers[rt.Name] = &httpapi.Handler{
			Route: rt, Service: svc, Logger: obs.NewLogger(e.logs, rt.Name),
			NewCorrelationID: func() string { return app.NewID("cid") }, Now: time.Now,
		}
	}
	return e
}

// who is a caller's token claims.
type who struct {
	sub, org, projectRoles, platformRoles, principalType string
}

func dev(p string) who    { return who{sub: "dev-" + p, org: orgA, projectRoles: p + ":developer"} }
func admin(p string) who  { return who{sub: "admin-" + p, org: orgA, projectRoles: p + ":admin"} }
func viewer(p string) who { return who{sub: "viewer-" + p, org: orgA, projectRoles: p + ":viewer"} }
func platform(r string) who {
	return who{sub: "platform-" + r, org: orgA, platformRoles: r, principalType: "service_account"}
}
func foreign(p, r string) who { return who{sub: "foreign-" + r, org: orgB, projectRoles: p + ":" + r} }

// req is one API call.
type req struct {
	route    string
	as       who
	project  string // path project; X-Project-ID too unless header set
	artifact string
	body     string
	noBody   bool
	headers  map[string]string // overrides; "" deletes
	query    map[string]string
	idemKey  string
	b64      bool
}

type resp struct {
	status  int
	headers map[string]string
	body    string
	json    map[string]any
}

func (r resp) errCode() string {
	if e, ok := r.json["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (r resp) reason() string {
	if e, ok := r.json["error"].(map[string]any); ok {
		if d, ok := e["details"].(map[string]any); ok {
			s, _ := d["reason"].(string)
			return s
		}
	}
	return ""
}

func (r resp) str(k string) string { s, _ := r.json[k].(string); return s }

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadFixture reads the route's sample event from events/, the same file
// `make invoke` and `sam local invoke` use.
func loadFixture(t testing.TB, route string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "events", route+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (e *env) event(r req) events.APIGatewayV2HTTPRequest {
	ev := loadFixture(e.t, r.route)
	if r.project == "" {
		r.project = projectA
	}
	rt, _ := httpapi.RouteByName(r.route)
	ev.PathParameters = map[string]string{"project_id": r.project}
	path := strings.ReplaceAll(rt.Path, "{project_id}", r.project)
	for _, param := range []string{"artifact_id", "intent_id"} {
		if strings.Contains(rt.Path, "{"+param+"}") {
			ev.PathParameters[param] = r.artifact
			path = strings.ReplaceAll(path, "{"+param+"}", r.artifact)
		}
	}
	ev.RawPath, ev.RequestContext.HTTP.Path = path, path
	ev.Headers["x-project-id"] = r.project
	ev.Headers["x-correlation-id"] = fmt.Sprintf("test-%d", e.seq.Add(1))
	if rt.Mutation() {
		key := r.idemKey
		if key == "" {
			key = fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), e.seq.Add(1))
		}
		ev.Headers["x-idempotency-key"] = key
		if !r.noBody {
			ev.Body = r.body
		} else {
			ev.Body = ""
		}
		if r.b64 {
			ev.IsBase64Encoded = true
		}
	}
	for k, v := range r.headers {
		if v == "" {
			delete(ev.Headers, k)
		} else {
			ev.Headers[k] = v
		}
	}
	ev.QueryStringParameters = r.query
	raw := []string{}
	for k, v := range r.query {
		raw = append(raw, k+"="+v)
	}
	ev.RawQueryString = strings.Join(raw, "&")
	pt := r.as.principalType
	if pt == "" {
		pt = "user"
	}
	claims := map[string]string{"sub": r.as.sub, "org_id": r.as.org, "principal_type": pt, "iss": "https://auth.example.test/", "aud": "gpuaas-api"}
	if r.as.projectRoles != "" {
		claims["project_roles"] = r.as.projectRoles
	}
	if r.as.platformRoles != "" {
		claims["platform_roles"] = r.as.platformRoles
	}
	ev.RequestContext.Authorizer.JWT.Claims = claims
	return ev
}

// do runs the route's real handler and checks the response against the contract.
func (e *env) do(r req) resp {
	e.t.Helper()
	ev := e.event(r)
	h := e.handlers[r.route]
	out, err := h.Handle(context.Background(), ev)
	if err != nil {
		e.t.Errorf("%s: handler returned error %v", r.route, err)
	}
	if !e.skipContract {
		doc.ValidateResponse(e.t, ev.RequestContext.HTTP.Method, ev.RawPath, ev.RawQueryString, out.StatusCode, out.Headers, []byte(out.Body))
	}
	res := resp{status: out.StatusCode, headers: out.Headers, body: out.Body}
	if out.StatusCode >= 500 && !(e.faulty && out.StatusCode == 503) {
		for _, l := range e.logs.lines() {
			if l["correlation_id"] == out.Headers["X-Correlation-ID"] {
				e.t.Logf("%s %d: %v", r.route, out.StatusCode, l["internal_error"])
			}
		}
	}
	_ = json.Unmarshal([]byte(out.Body), &res.json)
	if out.Headers["X-Correlation-ID"] != ev.Headers["x-correlation-id"] && ev.Headers["x-correlation-id"] != "" {
		e.t.Errorf("%s: correlation id %q not echoed (got %q)", r.route, ev.Headers["x-correlation-id"], out.Headers["X-Correlation-ID"])
	}
	if out.StatusCode >= 400 {
		if cid, _ := res.json["error"].(map[string]any)["correlation_id"].(string); cid != out.Headers["X-Correlation-ID"] {
			e.t.Errorf("%s: envelope correlation_id %q != header %q", r.route, cid, out.Headers["X-Correlation-ID"])
		}
	}
	return res
}

// lastCalls is the dynamodb_calls of the last logged request.
func (e *env) lastCalls() int {
	lines := e.logs.lines()
	if len(lines) == 0 {
		e.t.Fatal("no log line")
	}
	n, _ := lines[len(lines)-1]["dynamodb_calls"].(float64)
	return int(n)
}

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func registerBody(project, slug, version, dig string) string {
	b, _ := json.Marshal(map[string]string{
		"app_slug": slug, "app_version": version,
		"repository": registryHost + "/gpuaas/" + orgA + "/" + project + "/" + slug,
		"digest":     dig, "digest_algorithm": "sha256", "artifact_kind": "container_image",
		"source_type": "platform_push", "media_type": "application/vnd.oci.image.manifest.v1+json",
	})
	return string(b)
}

var regSeq atomic.Int64

// register creates an artifact in project and returns its id.
func (e *env) register(project string) string {
	e.t.Helper()
	n := int(regSeq.Add(1))
	r := e.do(req{route: "register-artifact", as: dev(project), project: project, body: registerBody(project, "vision-api", fmt.Sprintf("1.0.%d", n), digest(n))})
	if r.status != 201 {
		e.t.Fatalf("register: %d %s", r.status, r.body)
	}
	return r.str("artifact_id")
}

// setTrust stands in for the verifier (a later issue) by writing trust_state directly.
func (e *env) setTrust(project, id, trust string) {
	e.t.Helper()
	_, err := e.ddb.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(e.table),
		Key: map[string]types.AttributeValue{
			"PK": &types.AttributeValueMemberS{Value: "PROJECT#" + project},
			"SK": &types.AttributeValueMemberS{Value: "ARTIFACT#" + id},
		},
		UpdateExpression:          aws.String("SET trust_state = :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberS{Value: trust}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) dump() string { return mini.Dump(e.t, e.table) }

func (e *env) audits() []map[string]types.AttributeValue { return mini.Items(e.t, e.table, "audit") }

// mainTB lets TestMain use helpers that take a testing.TB.
type mainTB struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (m *mainTB) Helper()          {}
func (m *mainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }
func (m *mainTB) Fatalf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...))
	m.failed = true
	panic("fatal in TestMain")
}
func (m *mainTB) Errorf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...))
	m.failed = true
}
func (m *mainTB) Fatal(args ...any) { m.Fatalf("%s", fmt.Sprint(args...)) }
func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
}

// defaultPolicyBody is the default policy as a PUT body.
const defaultPolicyBody = `{"channels":[` +
	`{"name":"dev","protected":false,"required_trust":["unverified","verified"],"signature_required":false},` +
	`{"name":"staging","protected":false,"required_trust":["unverified","verified"],"signature_required":false},` +
	`{"name":"production","protected":true,"required_trust":["verified"],"signature_required":false}],` +
	`"signature_required":false,"trusted_keys":[],"allowed_source_types":["platform_push","pull_through_cache"],"pull_through_prefixes":[]}`

// intent creates a publish intent in project and returns its id.
func (e *env) intent(project string) string {
	e.t.Helper()
	n := regSeq.Add(1)
	r := e.do(req{route: "create-publish-intent", as: dev(project), project: project,
		body: fmt.Sprintf(`{"app_slug":"intent-app","app_version":"0.%d","artifact_kind":"container_image","source_type":"platform_push"}`, n)})
	if r.status != 201 {
		e.t.Fatalf("intent: %d %s", r.status, r.body)
	}
	return r.str("intent_id")
}
