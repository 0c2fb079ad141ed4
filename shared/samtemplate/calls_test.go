package samtemplate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awsecr "github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gpuaas/app-artifacts/infra/local/registry"
	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
	"github.com/gpuaas/app-artifacts/shared/signature"
	"github.com/gpuaas/app-artifacts/shared/workers"
)

// TestPolicyCoversCalls holds template.yaml's grants to what the code does.
// Every function runs, wired as its main package wires it (app.NewHandler,
// workers.New*), against a local DynamoDB, a local registry (ECR API and
// registry API) and a local EventBridge, through a scenario that takes every
// path with a call of its own: the IAM action and resource of every call are
// recorded per function, and they must equal the function's grants: every
// call granted (on AWS an ungranted one is AccessDenied), every grant called
// (an unused one is a loose grant). Repeated transitions probe the state
// machine: should one become an accepted no-op (a ConditionCheck on the
// artifact), its function's grant must follow.
func TestPolicyCoversCalls(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.scenario()

	matchGrants(t, load(t, nil), w.calls)
}

// matchGrants reports every call tpl does not grant and every grant no call used.
func matchGrants(t testing.TB, tpl *samtemplate.Template, c *calls) {
	t.Helper()
	for _, id := range tpl.FunctionIDs() {
		grants, err := tpl.PolicyGrants(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		called := c.of(id)
		if len(called) == 0 {
			t.Errorf("%s: the scenario made no call", id)
		}
		for c := range called {
			if !granted(grants, c) {
				t.Errorf("%s calls %s on %s, which template.yaml does not grant", id, c.Action, c.Resource)
			}
		}
		for action, resources := range grants {
			for _, r := range resources {
				used := false
				for c := range called {
					used = used || (c.Action == action && iamMatch(r, c.Resource))
				}
				if !used {
					t.Errorf("%s is granted %s on %s, which its code never called", id, action, r)
				}
			}
		}
	}
	if t.Failed() {
		for _, id := range tpl.FunctionIDs() {
			t.Logf("%s called: %v", id, c.sorted(id))
		}
	}
}

// iamCall is one permission a call needs.
type iamCall struct{ Action, Resource string }

func granted(grants map[string][]string, c iamCall) bool {
	for _, r := range grants[c.Action] {
		if iamMatch(r, c.Resource) {
			return true
		}
	}
	return false
}

// iamMatch matches an IAM resource pattern: * is any run of characters
// (slashes included), ? any one.
func iamMatch(pattern, s string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(s)
}

// calls records, per function logical id, the permissions its calls needed.
type calls struct {
	mu sync.Mutex
	by map[string]map[iamCall]bool
}

func (c *calls) add(fn string, cs ...iamCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by[fn] == nil {
		c.by[fn] = map[iamCall]bool{}
	}
	for _, x := range cs {
		c.by[fn][x] = true
	}
}

func (c *calls) of(fn string) map[iamCall]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[iamCall]bool{}
	for k := range c.by[fn] {
		out[k] = true
	}
	return out
}

func (c *calls) sorted(fn string) []string {
	var out []string
	for k := range c.of(fn) {
		out = append(out, k.Action+" "+k.Resource)
	}
	sort.Strings(out)
	return out
}

// names turns the local resources' names into what PolicyGrants resolves
// the template's to.
type names struct{ table, bus string }

func (n names) tableARN(name string) string {
	if name == n.table {
		return tableARN
	}
	return "unknown table " + name
}

func repoARN(repo string) string { return ecrRepos + repo }

// sdkCalls are the permissions an AWS SDK request needs. A request it does
// not know is recorded as itself, which nothing grants: extend it.
func (n names) sdkCalls(ctx context.Context, params any) []iamCall {
	var out []iamCall
	switch in := params.(type) {
	case *dynamodb.BatchGetItemInput:
		for t := range in.RequestItems {
			out = append(out, iamCall{"dynamodb:BatchGetItem", n.tableARN(t)})
		}
	case *dynamodb.QueryInput:
		r := n.tableARN(aws.ToString(in.TableName))
		if in.IndexName != nil {
			r += "/index/" + *in.IndexName
		}
		out = append(out, iamCall{"dynamodb:Query", r})
	case *dynamodb.TransactWriteItemsInput:
		// A transaction is authorised item by item.
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				out = append(out, iamCall{"dynamodb:PutItem", n.tableARN(aws.ToString(it.Put.TableName))})
			case it.Update != nil:
				out = append(out, iamCall{"dynamodb:UpdateItem", n.tableARN(aws.ToString(it.Update.TableName))})
			case it.Delete != nil:
				out = append(out, iamCall{"dynamodb:DeleteItem", n.tableARN(aws.ToString(it.Delete.TableName))})
			case it.ConditionCheck != nil:
				out = append(out, iamCall{"dynamodb:ConditionCheckItem", n.tableARN(aws.ToString(it.ConditionCheck.TableName))})
			}
		}
	case *awsecr.BatchGetImageInput:
		out = append(out, iamCall{"ecr:BatchGetImage", repoARN(aws.ToString(in.RepositoryName))})
	case *awsecr.CreateRepositoryInput:
		out = append(out, iamCall{"ecr:CreateRepository", repoARN(aws.ToString(in.RepositoryName))})
	case *awsecr.GetAuthorizationTokenInput:
		out = append(out, iamCall{"ecr:GetAuthorizationToken", "*"})
	case *eventbridge.PutEventsInput:
		for _, e := range in.Entries {
			bus := "unknown bus " + aws.ToString(e.EventBusName)
			if aws.ToString(e.EventBusName) == n.bus {
				bus = "EventBus.Arn"
			}
			out = append(out, iamCall{"events:PutEvents", bus})
		}
	default:
		out = append(out, iamCall{awsmiddleware.GetServiceID(ctx) + ":" + awsmiddleware.GetOperationName(ctx), fmt.Sprintf("(%T: not mapped to IAM by sdkCalls)", params)})
	}
	return out
}

// sdkRecorder records fn's SDK calls.
func (c *calls) sdkRecorder(fn string, n names) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("RecordIAM", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.add(fn, n.sdkCalls(ctx, in.Parameters)...)
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	}
}

var ociPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|referrers|tags)/[^/]+$`)

// ociRecorder records the registry API requests that reach h as fn's: on
// ECR, reading a manifest or the referrers of a digest is BatchGetImage, a
// blob GetDownloadUrlForLayer, a tag list ListImages. The version check
// (GET /v2/) needs no permission; anything else (a push) is recorded as
// itself, which nothing grants. The ECR JSON API's requests (X-Amz-Target)
// are the SDK's, recorded there.
func (c *calls) ociRecorder(fn string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "" && strings.TrimSuffix(r.URL.Path, "/") != "/v2" {
			call := iamCall{"registry:" + r.Method + " " + r.URL.Path, "(not a read)"}
			if m := ociPath.FindStringSubmatch(r.URL.Path); m != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				action := map[string]string{
					"manifests": "ecr:BatchGetImage", "referrers": "ecr:BatchGetImage",
					"blobs": "ecr:GetDownloadUrlForLayer", "tags": "ecr:ListImages",
				}[m[2]]
				call = iamCall{action, repoARN(m[1])}
			}
			c.add(fn, call)
		}
		h.ServeHTTP(w, r)
	})
}

// world is the local cloud of TestPolicyCoversCalls.
type world struct {
	t        *testing.T
	calls    *calls
	cfg      *app.Config
	pushHost string // the registry, unrecorded, for the scenario's own pushes
	regHost  string // the registry the functions use
	handlers map[string]func(events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse
	verify   func(artifactID string)
	register func(repo, tag, digest string)
	publish  func()
	key      *ecdsa.PrivateKey
	seq      int
}

const (
	callsOrg     = "org-acme"
	callsProject = "proj-alpha"
)

func newWorld(t *testing.T) *world {
	w := &world{t: t, calls: &calls{by: map[string]map[iamCall]bool{}}, handlers: map[string]func(events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse{}}
	ddb := ddbtest.Start(t)
	n := names{table: ddb.NewTable(t), bus: "gpuaas-app-artifacts-test"}

	// One registry behind two listeners: the functions' (recorded, as the
	// verifier's: only it is wired with the registry API) and the scenario's.
	reg := registry.New(registry.Options{})
	fnSrv := httptest.NewServer(w.calls.ociRecorder("VerifierFunction", reg))
	t.Cleanup(fnSrv.Close)
	pushSrv := httptest.NewServer(reg)
	t.Cleanup(pushSrv.Close)
	w.regHost, w.pushHost = strings.TrimPrefix(fnSrv.URL, "http://"), strings.TrimPrefix(pushSrv.URL, "http://")

	// EventBridge: PutEvents accepts every entry.
	bus := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var in struct{ Entries []json.RawMessage }
		_ = json.NewDecoder(r.Body).Decode(&in)
		out := map[string]any{"FailedEntryCount": 0, "Entries": []map[string]string{}}
		for i := range in.Entries {
			out["Entries"] = append(out["Entries"].([]map[string]string), map[string]string{"EventId": fmt.Sprint("ev-", i)})
		}
		rw.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(rw).Encode(out)
	}))
	t.Cleanup(bus.Close)

	w.cfg = &app.Config{
		TableName: n.table, RegistryHost: w.regHost, CursorSecret: cursorSecret, Stage: "test",
		DynamoDBEndpoint: ddb.URL, ECREndpoint: pushSrv.URL, EventBridgeEndpoint: bus.URL, EventBusName: n.bus,
	}
	awsCfg := func(fn string) aws.Config {
		return aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
			HTTPClient:  awshttp.NewBuildableClient(),
			Retryer:     func() aws.Retryer { return retry.NewStandard() },
			APIOptions:  []func(*middleware.Stack) error{w.calls.sdkRecorder(fn, n)},
		}
	}

	for _, rt := range httpapi.Routes {
		var opts []app.Option
		if rt.NeedsRegistry { // as functions/<route>/main.go wires it
			opts = append(opts, app.WithRepositories(ecr.FromConfig))
		}
		h, err := app.NewHandler(rt.Name, w.cfg, awsCfg(rt.LogicalID), io.Discard, opts...)
		if err != nil {
			t.Fatal(err)
		}
		w.handlers[rt.Name] = func(ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
			out, err := h.Handle(context.Background(), ev)
			if err != nil {
				t.Fatalf("%s: %v", rt.Name, err)
			}
			return out
		}
	}

	verifier, err := workers.NewVerifier(w.cfg, awsCfg("VerifierFunction"))
	if err != nil {
		t.Fatal(err)
	}
	verifier.Logger = discardLogger()
	w.verify = func(artifactID string) {
		detail, _ := json.Marshal(map[string]any{"audit_id": "aud_calls", "project_id": callsProject, "artifact_id": artifactID, "correlation_id": "calls-verify"})
		ev := events.EventBridgeEvent{ID: "ev-" + artifactID, DetailType: "App Artifact Registered", Source: "gpuaas.app-artifacts", Detail: detail}
		if err := verifier.Handle(context.Background(), ev); err != nil {
			t.Fatalf("verifier %s: %v", artifactID, err)
		}
	}
	registrar, err := workers.NewRegistrar(w.cfg, awsCfg("RegistrarFunction"))
	if err != nil {
		t.Fatal(err)
	}
	registrar.Logger = discardLogger()
	w.register = func(repo, tag, digest string) {
		var ev events.ECRImageActionEvent
		ev.ID, ev.Source, ev.DetailType = "push-"+tag, "aws.ecr", "ECR Image Action"
		ev.Detail.ActionType, ev.Detail.Result = "PUSH", "SUCCESS"
		ev.Detail.RepositoryName, ev.Detail.ImageTag, ev.Detail.ImageDigest = repo, tag, digest
		if err := registrar.Handle(context.Background(), ev); err != nil {
			t.Fatalf("registrar: %v", err)
		}
	}
	publisher, err := workers.NewPublisher(w.cfg, awsCfg("PublisherFunction"))
	if err != nil {
		t.Fatal(err)
	}
	publisher.Logger = discardLogger()
	w.publish = func() {
		var ev events.DynamoDBEvent
		readFixture(t, "publisher-audit-stream", &ev)
		resp, err := publisher.Handle(context.Background(), ev)
		if err != nil || len(resp.BatchItemFailures) > 0 {
			t.Fatalf("publisher: %v %+v", err, resp)
		}
	}

	if w.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	return w
}

// readFixture decodes events/<name>.json.
func readFixture(t *testing.T, name string, v any) {
	t.Helper()
	root, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "events", name+".json"))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
}

// answer is a response's status and decoded body.
type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// call runs route as a project admin who is also trust_admin (every
// permission), path ids from ids in the route's order, with body (mutations)
// or query (reads), and wants status (0: any).
func (w *world) call(route string, status int, body string, query map[string]string, ids ...string) answer {
	w.t.Helper()
	var ev events.APIGatewayV2HTTPRequest
	readFixture(w.t, route, &ev)
	rt, _ := httpapi.RouteByName(route)
	ev.PathParameters = map[string]string{"project_id": callsProject}
	path := strings.ReplaceAll(rt.Path, "{project_id}", callsProject)
	for _, p := range []string{"artifact_id", "intent_id"} {
		if strings.Contains(rt.Path, "{"+p+"}") {
			ev.PathParameters[p], ids = ids[0], ids[1:]
			path = strings.ReplaceAll(path, "{"+p+"}", ev.PathParameters[p])
		}
	}
	ev.RawPath, ev.RequestContext.HTTP.Path = path, path
	w.seq++
	ev.Headers["x-project-id"] = callsProject
	ev.Headers["x-correlation-id"] = fmt.Sprintf("calls-%d", w.seq)
	ev.Body = ""
	if rt.Mutation() {
		ev.Headers["x-idempotency-key"] = fmt.Sprintf("calls-key-%d", w.seq)
		ev.Body = body
	}
	ev.QueryStringParameters = query
	var raw []string
	for k, v := range query {
		raw = append(raw, k+"="+v)
	}
	ev.RawQueryString = strings.Join(raw, "&")
	ev.RequestContext.Authorizer.JWT.Claims = map[string]string{
		"sub": "calls-admin", "org_id": callsOrg, "principal_type": "user",
		"project_roles": callsProject + ":admin", "platform_roles": "trust_admin",
	}
	out := w.handlers[route](ev)
	a := answer{status: out.StatusCode, raw: out.Body}
	_ = json.Unmarshal([]byte(out.Body), &a.body)
	if status != 0 && out.StatusCode != status {
		w.t.Fatalf("%s: status %d, want %d: %s", route, out.StatusCode, status, out.Body)
	}
	return a
}

// push writes a random OCI image to repo:tag and returns its digest.
func (w *world) push(repo, tag string) string {
	w.t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, ggtypes.OCIManifestSchema1), ggtypes.OCIConfigJSON)
	return w.write(repo, tag, img)
}

func (w *world) write(repo, tag string, img v1.Image) string {
	w.t.Helper()
	ref, err := name.ParseReference(w.pushHost + "/" + repo + ":" + tag)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		w.t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		w.t.Fatal(err)
	}
	return d.String()
}

// sign pushes a legacy cosign signature of repo@digest by w.key.
func (w *world) sign(repo, digest string) {
	w.t.Helper()
	var p struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	p.Critical.Identity.DockerReference = w.regHost + "/" + repo
	p.Critical.Image.DockerManifestDigest = digest
	p.Critical.Type = signature.SimpleSigningType
	payload, _ := json.Marshal(p)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, w.key, h[:])
	if err != nil {
		w.t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(payload, signature.SimpleSigningMediaType),
		Annotations: map[string]string{signature.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, ggtypes.OCIManifestSchema1), ggtypes.OCIConfigJSON)
	w.write(repo, "sha256-"+strings.TrimPrefix(digest, "sha256:")+".sig", img)
}

func (w *world) publicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&w.key.PublicKey)
	if err != nil {
		w.t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (w *world) registerBody(repo, version, digest, source string) string {
	b, _ := json.Marshal(map[string]string{
		"app_slug": "app", "app_version": version, "repository": w.regHost + "/" + repo, "digest": digest,
		"digest_algorithm": "sha256", "artifact_kind": "container_image", "source_type": source,
		"media_type": string(ggtypes.OCIManifestSchema1),
	})
	return string(b)
}

func (w *world) trust(id string) string {
	return w.call("get-artifact", 200, "", nil, id).str("trust_state")
}

// scenario takes every path that makes a call of its own.
func (w *world) scenario() {
	t := w.t
	repo := artifact.RepositoryName(callsOrg, callsProject, "app")
	const pullThroughRepo = "pull-through/docker-hub/library/app" // the parameter's default prefix
	channels := `[{"name":"stable","protected":false,"required_trust":["verified"],"signature_required":false}]`

	// Policy: one source type allowed (its block deleted), one refused (put).
	w.call("put-artifact-policy", 200, `{"channels":`+channels+`,"signature_required":false,"trusted_keys":[],`+
		`"allowed_source_types":["platform_push"],"pull_through_prefixes":[]}`, nil)
	w.call("get-artifact-policy", 200, "", nil)

	// A publish intent (the repository made), read, fulfilled by a push.
	intent := w.call("create-publish-intent", 201, `{"app_slug":"app","app_version":"1.0.0","artifact_kind":"container_image","source_type":"platform_push"}`, nil)
	w.call("get-publish-intent", 200, "", nil, intent.str("intent_id"))
	w.register(repo, "1.0.0", w.push(repo, "1.0.0"))
	list := w.call("list-artifacts", 200, "", nil)
	items, _ := list.body["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("after the push: %s", list.raw)
	}
	pushed := items[0].(map[string]any)["artifact_id"].(string)

	// Verified (no signature wanted), promoted, promoted again (a no-op).
	w.verify(pushed)
	if got := w.trust(pushed); got != "verified" {
		t.Fatalf("pushed artifact: trust %s", got)
	}
	w.call("promote-artifact", 200, `{"channel":"stable"}`, nil, pushed)
	promoteCID := fmt.Sprintf("calls-%d", w.seq)
	w.call("promote-artifact", 200, `{"channel":"stable"}`, nil, pushed)

	// Reads: a filtered page; audit rows by project, artifact, correlation id.
	w.call("list-artifacts", 200, "", map[string]string{"channel": "stable", "limit": "1"})
	w.call("list-artifact-audit-events", 200, "", map[string]string{"action": "app_artifact.promote"}, pushed)
	w.call("list-audit-events", 200, "", nil)
	w.call("list-audit-events", 200, "", map[string]string{"artifact_id": pushed})
	w.call("list-audit-events", 200, "", map[string]string{"correlation_id": promoteCID})

	// Lifecycle to the end, each step asked twice (the second refused today).
	w.call("deprecate-artifact", 200, `{"reason":"superseded"}`, nil, pushed)
	w.call("deprecate-artifact", 0, `{"reason":"superseded"}`, nil, pushed)
	w.call("retire-artifact", 200, "", nil, pushed)
	w.call("retire-artifact", 0, "", nil, pushed)

	// Registered through the API, then revoked (twice).
	digest := w.push(repo, "1.0.1")
	revoked := w.call("register-artifact", 201, w.registerBody(repo, "1.0.1", digest, "platform_push"), nil).str("artifact_id")
	w.call("revoke-artifact", 200, `{"reason":"key compromised"}`, nil, revoked)
	w.call("revoke-artifact", 0, `{"reason":"key compromised"}`, nil, revoked)

	// Signatures required, pull-through allowed.
	w.call("put-artifact-policy", 200, `{"channels":`+channels+`,"signature_required":true,`+
		`"trusted_keys":[{"key_id":"calls-key","pem":`+jsonString(w.publicKeyPEM())+`}],`+
		`"allowed_source_types":["platform_push","pull_through_cache"],"pull_through_prefixes":["pull-through/"]}`, nil)

	// Signed: verified through the registry API (signature manifest, blob),
	// in the platform namespace and in the pull-through cache.
	digest = w.push(repo, "1.0.2")
	w.sign(repo, digest)
	signed := w.call("register-artifact", 201, w.registerBody(repo, "1.0.2", digest, "platform_push"), nil).str("artifact_id")
	w.verify(signed)
	digest = w.push(pullThroughRepo, "1.0.3")
	w.sign(pullThroughRepo, digest)
	cached := w.call("register-artifact", 201, w.registerBody(pullThroughRepo, "1.0.3", digest, "pull_through_cache"), nil).str("artifact_id")
	w.verify(cached)
	for _, id := range []string{signed, cached} {
		if got := w.trust(id); got != "verified" {
			t.Fatalf("signed artifact %s: trust %s", id, got)
		}
	}

	// Unsigned: signature missing (no legacy tag, no referrers), then
	// re-verification requested (twice).
	digest = w.push(repo, "1.0.4")
	unsigned := w.call("register-artifact", 201, w.registerBody(repo, "1.0.4", digest, "platform_push"), nil).str("artifact_id")
	w.verify(unsigned)
	if got := w.trust(unsigned); got != "failed_verification" {
		t.Fatalf("unsigned artifact: trust %s", got)
	}
	w.call("verify-artifact", 202, "", nil, unsigned)
	w.call("verify-artifact", 0, "", nil, unsigned)

	// The outbox relay.
	w.publish()
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
