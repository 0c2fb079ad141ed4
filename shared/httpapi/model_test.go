package httpapi_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"pgregory.net/rapid"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
)

// TestModel runs modelWorkers rapid checks in parallel, together
// modelSequences random sequences by default (-rapid.checks or RAPID_CHECKS
// set the number per worker; with -rapid.seed one worker runs them all).
const (
	modelSequences = 1000
	modelWorkers   = 2
)

// TestModel drives random sequences of every operation through the real
// handlers (and the verifier's RecordVerdict) and holds the results against
// a small model of SPEC sections 4-7. After every step it compares what the
// step touched with the model and checks the invariants: only legal
// transitions (each new audit row is one, and rows chain before->after),
// retired and revoked are final, revision grows by exactly one per change,
// audit rows equal successful state-changing mutations, no quarantined
// artifact gains a channel, replays are byte-identical; after the last step
// it compares every artifact and every audit row.
//
// Each worker has its own table, emptied before every sequence: minidyn
// answers a Query by walking every key of the table, so one table holding
// every sequence would make the run quadratic. (Tables are created before the
// workers start: minidyn's CreateTable and DeleteTable race with its Query.)
func TestModel(t *testing.T) {
	seed := rapidSeed()
	// Every rapid.Check starts from a fixed seed: workers would repeat one
	// another's sequences, so a seeded run is one worker doing them all.
	workers := modelWorkers
	if seed != 0 {
		workers = 1
	}
	setRapidChecks(t, modelSequences/workers)
	w := newModelWorld(t)
	start := time.Now()
	t.Cleanup(func() {
		if seed != 0 {
			t.Logf("model: rapid seed %d, one worker (-rapid.seed=%d repeats this run)", seed, seed)
		} else {
			t.Logf("model: rapid seed random, a different one per worker, which rapid does not report (-rapid.seed=N fixes one)")
		}
		t.Logf("model: %d sequences, %d steps, %d HTTP requests, %d verdicts in %v", w.sequences.Load(), w.steps.Load(), w.requests.Load(), w.verdicts.Load(), time.Since(start).Round(time.Millisecond))
		t.Logf("model outcomes (route as caller, status, reason: count):%s", w.outcomes())
	})
	tables := make([]string, workers)
	for i := range tables {
		tables[i] = w.newTable(t)
	}
	for i, table := range tables {
		t.Run(fmt.Sprintf("worker-%d", i), func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, func(rt *rapid.T) { w.sequence(t, rt, table) })
		})
	}
}

// rapidSeed is the seed rapid.Check starts from: -rapid.seed, else
// RAPID_SEED (the flag's default), else 0, for which rapid draws a random
// seed per rapid.Check and does not log it unless the check fails.
func rapidSeed() uint64 {
	f := flag.Lookup("rapid.seed")
	if f == nil {
		return 0
	}
	n, _ := strconv.ParseUint(f.Value.String(), 10, 64)
	return n
}

// setRapidChecks sets -rapid.checks to n for this test unless the caller
// chose a number (flag or RAPID_CHECKS).
func setRapidChecks(t *testing.T, n int) {
	explicit := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	f := flag.Lookup("rapid.checks")
	if explicit || f == nil {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

// rapidTB lets the harness (which takes a testing.TB) report to rapid, so a
// contract violation inside e.do fails the sequence and gets shrunk.
type rapidTB struct {
	testing.TB
	rt *rapid.T
}

func (r rapidTB) Helper()                   { r.rt.Helper() }
func (r rapidTB) Errorf(f string, a ...any) { r.rt.Helper(); r.rt.Errorf(f, a...) }
func (r rapidTB) Error(a ...any)            { r.rt.Helper(); r.rt.Error(a...) }
func (r rapidTB) Fatalf(f string, a ...any) { r.rt.Helper(); r.rt.Fatalf(f, a...) }
func (r rapidTB) Fatal(a ...any)            { r.rt.Helper(); r.rt.Fatal(a...) }
func (r rapidTB) Fail()                     { r.rt.Fail() }
func (r rapidTB) FailNow()                  { r.rt.FailNow() }
func (r rapidTB) Failed() bool              { return r.rt.Failed() }
func (r rapidTB) Logf(f string, a ...any)   { r.rt.Logf(f, a...) }
func (r rapidTB) Log(a ...any)              { r.rt.Log(a...) }
func (r rapidTB) Cleanup(f func())          { r.rt.Cleanup(f) }
func (r rapidTB) Context() context.Context  { return r.rt.Context() }

// modelWorld is what every sequence shares: the DynamoDB client, the table
// definition, counters.
type modelWorld struct {
	ddb    *dynamodb.Client
	table  *dynamodb.CreateTableInput
	tables atomic.Int64

	sequences, steps, requests, verdicts atomic.Int64
	mu                                   sync.Mutex
	counts                               map[string]int
}

func newModelWorld(t *testing.T) *modelWorld {
	in, err := ddbtest.Template(t).CreateTableInput(ddbtest.TableLogicalID, "model-template")
	if err != nil {
		t.Fatal(err)
	}
	return &modelWorld{ddb: mini.Client(app.DynamoDBOptions), table: in, counts: map[string]int{}}
}

func (w *modelWorld) count(k string) {
	w.mu.Lock()
	w.counts[k]++
	w.mu.Unlock()
}

func (w *modelWorld) outcomes() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.counts))
	for k := range w.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-60s %6d", k, w.counts[k])
	}
	return b.String()
}

// newTable creates a table shaped like template.yaml's.
func (w *modelWorld) newTable(t *testing.T) string {
	in := *w.table
	in.TableName = aws.String(fmt.Sprintf("model-%d", w.tables.Add(1)))
	if _, err := w.ddb.CreateTable(context.Background(), &in); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return *in.TableName
}

// env builds an API over table, emptied, like newEnv, reporting to rt.
func (w *modelWorld) env(t *testing.T, rt *rapid.T, table string) *env {
	if err := mini.Mini.ClearTable(table); err != nil {
		rt.Fatalf("clear table: %v", err)
	}
	tb := rapidTB{TB: t, rt: rt}
	e := &env{t: tb, table: table, ddb: w.ddb, logs: &syncBuffer{}, handlers: map[string]*httpapi.Handler{}}
	cfg := &app.Config{TableName: e.table, RegistryHost: registryHost, CursorSecret: strings.Repeat("k", 32), Stage: "test"}
	svc, err := app.NewService(cfg, e.ddb)
	if err != nil {
		rt.Fatal(err)
	}
	svc.Sleep = func(context.Context, int) { time.Sleep(time.Millisecond) }
	for _, r := range httpapi.Routes {
		e.handlers[r.Name] = &httpapi.Handler{
			Route: r, Service: svc, Logger: obs.NewLogger(e.logs, r.Name),
			NewCorrelationID: func() string { return app.NewID("cid") }, Now: time.Now,
		}
	}
	return e
}

// ---- the model ----

// specGrants is SPEC section 4's permission table, written out again so the
// model does not borrow the code under test.
var specGrants = map[string][]string{
	"viewer":      {"read"},
	"developer":   {"read", "publish", "promote", "deprecate"},
	"admin":       {"read", "publish", "promote", "promote_protected", "deprecate", "retire", "audit"},
	"operator":    {"read", "audit"},
	"trust_admin": {"read", "trust", "audit"},
}

var routePerm = map[string]string{
	"register-artifact":  "publish",
	"promote-artifact":   "promote",
	"deprecate-artifact": "deprecate",
	"retire-artifact":    "retire",
	"revoke-artifact":    "trust",
	"verify-artifact":    "trust",
	"get-artifact":       "read",
	"list-artifacts":     "read",
}

// specChannels is the default channel policy of SPEC section 5.
var specChannels = map[string]struct {
	protected bool
	trust     []string
}{
	"dev":        {false, []string{"unverified", "verified"}},
	"staging":    {false, []string{"unverified", "verified"}},
	"production": {true, []string{"verified"}},
}

func (m *model) can(w who, project, perm string) bool {
	for _, pr := range strings.Fields(w.projectRoles) {
		p, role, _ := strings.Cut(pr, ":")
		if p == project && role != "operator" && role != "trust_admin" && slices.Contains(specGrants[role], perm) {
			return true
		}
	}
	for _, role := range strings.Fields(w.platformRoles) {
		if (role == "operator" || role == "trust_admin") && slices.Contains(specGrants[role], perm) {
			return true
		}
	}
	return false
}

func quarantinedState(trust string) bool { return trust == "failed_verification" || trust == "revoked" }

// mArtifact is the model of one artifact.
type mArtifact struct {
	id, slug, version, digest string
	lifecycle, trust          string
	trustReason               *string
	channels                  []string
	revision                  int64
	audits                    int
	registered                *artifact.Artifact // as first answered, for late verdicts
}

// allowed is SPEC section 5's list of API actions the state admits.
func (a *mArtifact) allowed() []string {
	out := []string{}
	active := a.lifecycle == "published" || a.lifecycle == "promoted"
	q := quarantinedState(a.trust)
	if active && !q {
		out = append(out, "promote", "deprecate")
	}
	if a.lifecycle == "deprecated" {
		out = append(out, "retire")
	}
	if a.trust != "revoked" {
		out = append(out, "revoke")
	}
	if a.trust == "failed_verification" {
		out = append(out, "verify")
	}
	return out
}

// mcall is one API request of a sequence.
type mcall struct {
	route    string
	asName   string
	as       who
	project  string
	artifact string
	fields   map[string]string // the JSON body; nil: none
	style    int               // 0 compact, sorted keys (nil fields: no body); 1 spaced, reversed keys (nil: "{}")
	key      string
	query    map[string]string
}

func (c mcall) mutation() bool {
	rt, _ := httpapi.RouteByName(c.route)
	return rt.Mutation()
}

func (c mcall) scope() string { return c.project + "|" + c.as.sub + "|" + c.key }

// canon identifies the request for idempotency: route, path and the body's
// meaning (no body, {} and omitted fields are the same request).
func (c mcall) canon() string {
	f := c.fields
	if f == nil {
		f = map[string]string{}
	}
	b, _ := json.Marshal(f)
	return c.route + "|" + c.project + "|" + c.artifact + "|" + string(b)
}

func (c mcall) body() (string, bool) {
	if c.fields == nil {
		if c.style == 0 {
			return "", true
		}
		return "{ }", false
	}
	keys := make([]string, 0, len(c.fields))
	for k := range c.fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sep, colon := ",", ":"
	if c.style == 1 {
		slices.Reverse(keys)
		sep, colon = ",\n  ", " : "
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, _ := json.Marshal(c.fields[k])
		parts[i] = strconv.Quote(k) + colon + string(v)
	}
	return "{" + strings.Join(parts, sep) + "}", false
}

func (c mcall) req() req {
	body, noBody := c.body()
	return req{route: c.route, as: c.as, project: c.project, artifact: c.artifact, body: body, noBody: noBody, idemKey: c.key, query: c.query}
}

func (c mcall) String() string {
	body, _ := c.body()
	return fmt.Sprintf("%s as %s on %s/%s key=%s body=%s query=%v", c.route, c.asName, c.project, c.artifact, c.key, body, c.query)
}

type stored struct {
	canon  string
	status int
	body   string
}

// want is the model's answer to a request.
type want struct {
	status       int
	code, reason string
	replay       *stored
	change       bool // a state change with one audit row
	artifact     *mArtifact
	apply        func(r resp) // the model's change on success
	existing     string       // details.existing_artifact_id of a 409 already_exists
}

func wantErr(status int, code, reason string) want {
	return want{status: status, code: code, reason: reason}
}

type model struct {
	p, q    string // the sequence's project and a project it never writes
	owner   map[string]string
	arts    []*mArtifact
	stored  map[string]*stored
	history []mcall
	audits  int
	n       int
}

func (m *model) find(project, id string) *mArtifact {
	if project != m.p {
		return nil
	}
	for _, a := range m.arts {
		if a.id == id {
			return a
		}
	}
	return nil
}

// expect is SPEC sections 4-6 applied to the model, in the order the
// contract checks things: permission, body, idempotency, org, existence, state.
func (m *model) expect(c mcall) want {
	if !m.can(c.as, c.project, routePerm[c.route]) {
		return wantErr(403, "insufficient_permissions", "role_required")
	}
	owner := m.owner[c.project]
	if c.mutation() {
		if c.route == "revoke-artifact" && strings.TrimSpace(c.fields["reason"]) == "" {
			return wantErr(400, "invalid_request", "missing_reason")
		}
		if s, ok := m.stored[c.scope()]; ok {
			if s.canon == c.canon() {
				return want{status: s.status, replay: s}
			}
			return wantErr(422, "invalid_request", "idempotency_key_reused")
		}
	}
	if owner != "" && owner != c.as.org {
		return wantErr(403, "insufficient_permissions", "org_mismatch")
	}
	switch c.route {
	case "register-artifact":
		return m.expectRegister(c)
	case "list-artifacts":
		return want{status: 200}
	}
	a := m.find(c.project, c.artifact)
	if a == nil {
		return wantErr(404, "app_artifact_not_found", "artifact_not_found")
	}
	w := want{status: 200, artifact: a}
	stateInvalid := func(reason string) want {
		return want{status: 409, code: "app_artifact_state_invalid", reason: reason, artifact: a}
	}
	switch c.route {
	case "get-artifact":
		return w
	case "promote-artifact":
		ch, known := specChannels[c.fields["channel"]]
		switch {
		case known && ch.protected && !m.can(c.as, c.project, "promote_protected"):
			return wantErr(403, "insufficient_permissions", "protected_channel")
		case !known:
			return wantErr(400, "invalid_request", "unknown_channel")
		case quarantinedState(a.trust):
			return stateInvalid("trust_quarantine")
		case a.lifecycle != "published" && a.lifecycle != "promoted":
			return stateInvalid("lifecycle_transition_invalid")
		case !slices.Contains(ch.trust, a.trust):
			return stateInvalid("channel_requires_verified_trust")
		case slices.Contains(a.channels, c.fields["channel"]):
			return w // a no-op: 200, nothing changes, no audit row
		}
		w.change = true
		w.apply = func(resp) {
			a.lifecycle = "promoted"
			a.channels = append(a.channels, c.fields["channel"])
		}
	case "deprecate-artifact":
		switch {
		case quarantinedState(a.trust):
			return stateInvalid("trust_quarantine")
		case a.lifecycle != "published" && a.lifecycle != "promoted":
			return stateInvalid("lifecycle_transition_invalid")
		}
		w.change = true
		w.apply = func(resp) { a.lifecycle = "deprecated" }
	case "retire-artifact":
		if a.lifecycle != "deprecated" {
			return stateInvalid("lifecycle_transition_invalid")
		}
		w.change = true
		w.apply = func(resp) { a.lifecycle, a.channels = "retired", []string{} }
	case "revoke-artifact":
		if a.trust == "revoked" {
			return stateInvalid("trust_transition_invalid")
		}
		w.change = true
		w.apply = func(resp) { r := "revoked"; a.trust, a.trustReason = "revoked", &r }
	case "verify-artifact":
		if a.trust != "failed_verification" {
			return stateInvalid("trust_transition_invalid")
		}
		w.status, w.change = 202, true
		w.apply = func(resp) { a.trust, a.trustReason = "unverified", nil }
	}
	return w
}

func (m *model) expectRegister(c mcall) want {
	for _, a := range m.arts {
		if a.digest == c.fields["digest"] {
			w := wantErr(409, "app_artifact_already_exists", "digest_already_registered")
			w.existing = a.id
			return w
		}
	}
	for _, a := range m.arts {
		if a.slug == c.fields["app_slug"] && a.version == c.fields["app_version"] {
			w := wantErr(409, "app_artifact_already_exists", "app_version_already_registered")
			w.existing = a.id
			return w
		}
	}
	return want{status: 201, change: true, apply: func(r resp) {
		a := &mArtifact{id: r.str("artifact_id"), slug: c.fields["app_slug"], version: c.fields["app_version"],
			digest: c.fields["digest"], lifecycle: "published", trust: "unverified", channels: []string{}}
		a.registered = &artifact.Artifact{}
		if err := json.Unmarshal([]byte(r.body), a.registered); err != nil {
			panic(err)
		}
		m.arts = append(m.arts, a)
		if m.owner[c.project] == "" {
			m.owner[c.project] = c.as.org
		}
	}}
}

// ---- one sequence ----

type seqRun struct {
	w     *modelWorld
	rt    *rapid.T
	e     *env
	store *dynamo.Table
	svc   *lifecycle.Service
	m     *model
	id    int64
	// what the checks saw last
	cids     []string // correlation ids of the step's mutations
	changed  []string // artifacts the step changed, by the model or by an audit row
	seenRows int
	rowsPer  map[string]int
	seen     map[string]*artifact.Artifact
	lastSnap map[string]*artifact.Snapshot
}

var modelProjects atomic.Int64

func (w *modelWorld) sequence(t *testing.T, rt *rapid.T, table string) {
	n := modelProjects.Add(1)
	w.sequences.Add(1)
	e := w.env(t, rt, table)
	s := &seqRun{w: w, rt: rt, e: e, store: dynamo.New(e.ddb, e.table), svc: e.handlers["get-artifact"].Service, id: n,
		m:    &model{p: fmt.Sprintf("mp-%d", n), q: fmt.Sprintf("mq-%d", n), owner: map[string]string{}, stored: map[string]*stored{}},
		seen: map[string]*artifact.Artifact{}, lastSnap: map[string]*artifact.Snapshot{}, rowsPer: map[string]int{}}
	// The first writer is a developer of the org, so the project has an owner
	// the foreign-org calls can be refused against.
	s.call(s.registerCall("dev", dev(s.m.p), "fresh"))
	s.check()
	steps := rapid.IntRange(5, 25).Draw(rt, "steps")
	for range steps {
		w.steps.Add(1)
		op := rapid.SampledFrom(modelOps).Draw(rt, "op")
		s.step(op)
		s.check()
	}
	s.final()
}

// modelOps weights the operations (an entry per share).
var modelOps = []string{
	"register", "promote", "promote", "promote", "deprecate", "deprecate", "retire", "retire",
	"revoke", "reverify", "verdict", "verdict", "verdict", "replay", "replay", "reuse", "reuse",
	"foreign_project", "foreign_org", "get", "list",
}

func (s *seqRun) key() string {
	s.m.n++
	return fmt.Sprintf("model-key-%d-%d", s.id, s.m.n)
}

// persona returns a named caller.
func (s *seqRun) persona(name string) who {
	p, q := s.m.p, s.m.q
	switch name {
	case "dev":
		return dev(p)
	case "admin":
		return admin(p)
	case "viewer":
		return viewer(p)
	case "trust_admin":
		return platform("trust_admin")
	case "operator":
		return platform("operator")
	case "foreign_dev":
		return foreign(p, "developer")
	case "foreign_admin":
		return foreign(p, "admin")
	case "foreign_trust_admin":
		return who{sub: "foreign-trust-admin", org: orgB, platformRoles: "trust_admin", principalType: "service_account"}
	case "other_dev":
		return dev(q)
	case "other_admin":
		return admin(q)
	}
	s.rt.Fatalf("no persona %q", name)
	return who{}
}

func (s *seqRun) drawPersona(label string, names ...string) (string, who) {
	name := rapid.SampledFrom(names).Draw(s.rt, label)
	return name, s.persona(name)
}

// drawArtifact picks an artifact id of the project, or now and then one that
// does not exist.
func (s *seqRun) drawArtifact() string {
	ids := []string{"art_01ZZZZZZZZZZZZZZZZZZZZZZZZ"}
	for _, a := range s.m.arts {
		ids = append(ids, a.id, a.id, a.id)
	}
	return rapid.SampledFrom(ids).Draw(s.rt, "artifact")
}

func (s *seqRun) registerCall(name string, as who, mode string) mcall {
	s.m.n++
	n := s.m.n
	slug := []string{"app-a", "app-b"}[n%2]
	f := map[string]string{
		"app_slug": slug, "app_version": fmt.Sprintf("1.%d.0", n), "digest": fmt.Sprintf("sha256:%064x", s.id<<20|int64(n)),
		"digest_algorithm": "sha256", "artifact_kind": "container_image", "source_type": "platform_push",
		"media_type": "application/vnd.oci.image.manifest.v1+json",
	}
	if len(s.m.arts) > 0 && mode != "fresh" {
		prev := s.m.arts[rapid.IntRange(0, len(s.m.arts)-1).Draw(s.rt, "duplicate_of")]
		switch mode {
		case "dup_digest":
			f["digest"] = prev.digest
		case "dup_version":
			f["app_slug"], f["app_version"] = prev.slug, prev.version
		case "dup_both":
			f["digest"], f["app_slug"], f["app_version"] = prev.digest, prev.slug, prev.version
		}
	}
	// The repository is the caller's org's own, so a foreign org passes
	// validation and meets the project's owner.
	f["repository"] = registryHost + "/gpuaas/" + as.org + "/" + s.m.p + "/" + f["app_slug"]
	return mcall{route: "register-artifact", asName: name, as: as, project: s.m.p, fields: f, key: s.key()}
}

func (s *seqRun) reasonFields(label string, required bool) map[string]string {
	choices := []string{"none", "text", "text"}
	if required {
		choices = []string{"text", "text", "text", "blank"}
	}
	switch rapid.SampledFrom(choices).Draw(s.rt, label) {
	case "text":
		return map[string]string{"reason": rapid.SampledFrom([]string{"superseded", "cve-2026-0001", "leaked key", "ünïcode ok"}).Draw(s.rt, label+"_text")}
	case "blank":
		return map[string]string{"reason": " "}
	}
	return nil
}

// transitionCall draws a transition request on route.
func (s *seqRun) transitionCall(route, name string, as who) mcall {
	c := mcall{route: route, asName: name, as: as, project: s.m.p, artifact: s.drawArtifact(), key: s.key(),
		style: rapid.IntRange(0, 1).Draw(s.rt, "style")}
	switch route {
	case "promote-artifact":
		c.fields = map[string]string{"channel": rapid.SampledFrom([]string{"dev", "staging", "production", "production", "canary"}).Draw(s.rt, "channel")}
	case "revoke-artifact":
		c.fields = s.reasonFields("revoke_reason", true)
	default:
		c.fields = s.reasonFields("reason", false)
	}
	return c
}

var mutationRoutes = []string{"register-artifact", "promote-artifact", "deprecate-artifact", "retire-artifact", "revoke-artifact", "verify-artifact"}

func (s *seqRun) anyMutation(name string, as who) mcall {
	route := rapid.SampledFrom(mutationRoutes).Draw(s.rt, "route")
	if route == "register-artifact" {
		return s.registerCall(name, as, rapid.SampledFrom([]string{"fresh", "dup_digest"}).Draw(s.rt, "register_mode"))
	}
	return s.transitionCall(route, name, as)
}

func (s *seqRun) step(op string) {
	rt := s.rt
	switch op {
	case "register":
		name, as := s.drawPersona("caller", "dev", "dev", "admin", "viewer")
		s.call(s.registerCall(name, as, rapid.SampledFrom([]string{"fresh", "fresh", "dup_digest", "dup_version", "dup_both"}).Draw(rt, "register_mode")))
	case "promote":
		name, as := s.drawPersona("caller", "admin", "admin", "dev", "dev", "viewer")
		s.call(s.transitionCall("promote-artifact", name, as))
	case "deprecate":
		name, as := s.drawPersona("caller", "dev", "admin", "dev", "admin", "viewer")
		s.call(s.transitionCall("deprecate-artifact", name, as))
	case "retire":
		name, as := s.drawPersona("caller", "admin", "admin", "admin", "dev")
		s.call(s.transitionCall("retire-artifact", name, as))
	case "revoke":
		name, as := s.drawPersona("caller", "trust_admin", "trust_admin", "trust_admin", "admin")
		s.call(s.transitionCall("revoke-artifact", name, as))
	case "reverify":
		name, as := s.drawPersona("caller", "trust_admin", "trust_admin", "trust_admin", "operator")
		s.call(s.transitionCall("verify-artifact", name, as))
	case "verdict":
		s.verdict()
	case "replay":
		// The same key and the same request again, possibly spelled
		// differently: a stored success replays byte for byte, a failure
		// stored nothing and runs again.
		if len(s.m.history) == 0 {
			return
		}
		c := s.m.history[rapid.IntRange(0, len(s.m.history)-1).Draw(rt, "replay_of")]
		c.style = rapid.IntRange(0, 1).Draw(rt, "style")
		s.call(c)
	case "reuse":
		// The same principal's key with another request.
		if len(s.m.history) == 0 {
			return
		}
		prev := s.m.history[rapid.IntRange(0, len(s.m.history)-1).Draw(rt, "reuse_of")]
		c := s.anyMutation(prev.asName, prev.as)
		c.key = prev.key
		s.call(c)
	case "foreign_project":
		// Roles in another project: that project's path finds nothing of
		// this one (404), this one's path refuses them (403).
		name, as := s.drawPersona("caller", "other_dev", "other_admin")
		var c mcall
		if rapid.Bool().Draw(rt, "read") {
			c = mcall{route: "get-artifact", asName: name, as: as, project: s.m.p, artifact: s.drawArtifact()}
		} else {
			c = s.anyMutation(name, as)
		}
		if rapid.Bool().Draw(rt, "their_project") {
			c.project = s.m.q
			if c.route == "register-artifact" {
				c.route, c.fields, c.artifact = "promote-artifact", map[string]string{"channel": "dev"}, s.drawArtifact()
			}
		}
		s.call(c)
	case "foreign_org":
		name, as := s.drawPersona("caller", "foreign_dev", "foreign_admin", "foreign_trust_admin")
		switch rapid.SampledFrom([]string{"get", "list", "mutation"}).Draw(rt, "kind") {
		case "get":
			s.call(mcall{route: "get-artifact", asName: name, as: as, project: s.m.p, artifact: s.drawArtifact()})
		case "list":
			s.call(mcall{route: "list-artifacts", asName: name, as: as, project: s.m.p})
		default:
			s.call(s.anyMutation(name, as))
		}
	case "get":
		name, as := s.drawPersona("caller", "viewer", "operator", "dev")
		s.call(mcall{route: "get-artifact", asName: name, as: as, project: s.m.p, artifact: s.drawArtifact()})
	case "list":
		s.list()
	default:
		rt.Fatalf("unknown op %q", op)
	}
}

// call sends c, compares the answer with the model and applies the change.
func (s *seqRun) call(c mcall) resp {
	rt := s.rt
	rt.Helper()
	w := s.m.expect(c)
	s.w.requests.Add(1)
	r := s.e.do(c.req())
	if c.mutation() {
		s.cids = append(s.cids, r.headers["X-Correlation-ID"])
	}
	label := c.route + " as " + c.asName
	s.w.count(fmt.Sprintf("%-40s %d %s", label, r.status, r.reason()))
	if r.status != w.status || r.errCode() != w.code || r.reason() != w.reason {
		rt.Fatalf("%s\nwant %d %s/%s, got %d %s", c, w.status, w.code, w.reason, r.status, r.body)
	}
	if c.mutation() {
		s.m.history = append(s.m.history, c)
	}
	replayed := r.headers["Idempotent-Replayed"]
	if w.replay != nil {
		if replayed != "true" || r.body != w.replay.body {
			rt.Fatalf("%s\nreplay is not the first response byte for byte (Idempotent-Replayed=%q):\nfirst %s\nagain %s", c, replayed, w.replay.body, r.body)
		}
		return r
	}
	if replayed != "" {
		rt.Fatalf("%s: Idempotent-Replayed=%q on a first response", c, replayed)
	}
	if w.existing != "" {
		if got := r.json["error"].(map[string]any)["details"].(map[string]any)["existing_artifact_id"]; got != w.existing {
			rt.Fatalf("%s: existing_artifact_id %v, want %s", c, got, w.existing)
		}
	}
	if w.code == "app_artifact_state_invalid" {
		s.checkStateDetails(c, r, w.artifact)
	}
	if r.status >= 300 {
		return r
	}
	if c.mutation() {
		s.m.stored[c.scope()] = &stored{canon: c.canon(), status: r.status, body: r.body}
	}
	if w.change {
		w.apply(r)
		a := w.artifact
		if a == nil { // register
			a = s.m.arts[len(s.m.arts)-1]
		}
		a.revision++
		a.audits++
		s.m.audits++
		s.changed = append(s.changed, a.id)
	}
	switch c.route {
	case "list-artifacts":
	default:
		a := w.artifact
		if a == nil {
			a = s.m.arts[len(s.m.arts)-1]
		}
		s.compareBody(c.String(), r, a)
	}
	return r
}

// checkStateDetails: a refused transition names the state and what it admits.
func (s *seqRun) checkStateDetails(c mcall, r resp, a *mArtifact) {
	d, _ := r.json["error"].(map[string]any)["details"].(map[string]any)
	var allowed []string
	for _, v := range d["allowed_actions"].([]any) {
		allowed = append(allowed, v.(string))
	}
	got := []any{d["lifecycle_state"], d["trust_state"], strings.Join(allowed, ",")}
	want := []any{a.lifecycle, a.trust, strings.Join(a.allowed(), ",")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		s.rt.Fatalf("%s: details %v, want %v", c, got, want)
	}
	if r.reason() == "trust_quarantine" && d["escalate_to"] == nil {
		s.rt.Fatalf("%s: quarantine refusal does not point at the trust owner", c)
	}
}

func (s *seqRun) compareBody(what string, r resp, a *mArtifact) {
	var got artifact.Artifact
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		s.rt.Fatalf("%s: %v", what, err)
	}
	if diff := s.diff(&got, a); diff != "" {
		s.rt.Fatalf("%s: answered artifact differs from the model: %s\n%s", what, diff, r.body)
	}
}

// diff compares a stored or answered artifact with the model.
func (s *seqRun) diff(got *artifact.Artifact, a *mArtifact) string {
	reason := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	g := fmt.Sprintf("%s %s/%s %s reason=%s channels=%v rev=%d digest=%s", got.ArtifactID, got.Lifecycle, got.Trust, got.AppSlug+"@"+got.AppVersion, reason(got.TrustReason), got.Channels, got.Revision, got.Digest)
	w := fmt.Sprintf("%s %s/%s %s reason=%s channels=%v rev=%d digest=%s", a.id, a.lifecycle, a.trust, a.slug+"@"+a.version, reason(a.trustReason), a.channels, a.revision, a.digest)
	if g != w {
		return "got  " + g + "\nwant " + w
	}
	return ""
}

// always decides cmd whatever it is shown, as a verifier whose checks give
// the same answer on every read.
func always(cmd artifact.Command) lifecycle.Decide {
	return func(context.Context, *artifact.Artifact, *lifecycle.Project) (artifact.Command, error) {
		return cmd, nil
	}
}

var verdictReasons = []string{"digest_not_found", "digest_mismatch", "media_type_mismatch", "source_not_allowed", "signature_missing"}

// verdict records the verifier's verdict the way the verifier does: with
// lifecycle.Service.RecordVerdict on the artifact it read, either just now or
// (a late, duplicated event) at registration.
func (s *seqRun) verdict() {
	rt := s.rt
	if len(s.m.arts) == 0 {
		return
	}
	a := s.m.arts[rapid.IntRange(0, len(s.m.arts)-1).Draw(rt, "artifact")]
	read := a.registered
	late := rapid.Bool().Draw(rt, "late_event")
	if !late {
		var err error
		if read, _, err = s.store.GetArtifact(context.Background(), s.m.p, a.id); err != nil {
			rt.Fatal(err)
		}
	}
	cmd := artifact.Command{Action: artifact.ActionVerificationPass}
	if rapid.Bool().Draw(rt, "fails") {
		cmd = artifact.Command{Action: artifact.ActionVerificationFail, Reason: rapid.SampledFrom(verdictReasons).Draw(rt, "verdict_reason")}
	}
	s.m.n++
	cid := fmt.Sprintf("verdict-%d", s.m.n)
	s.cids = append(s.cids, cid)
	r := &lifecycle.Request{
		Caller:    lifecycle.Caller{Principal: lifecycle.Verifier, OrgID: orgA, CorrelationID: cid},
		ProjectID: s.m.p, IdemKey: fmt.Sprintf("event:aud_%d_%d", s.id, s.m.n),
	}
	s.w.verdicts.Add(1)
	wrote, err := s.svc.RecordVerdict(context.Background(), r, read, nil, always(cmd))
	wantWrote := a.trust == "unverified" // only unverified receives a verdict, however late the event
	s.w.count(fmt.Sprintf("%-40s wrote=%v", "verdict "+string(cmd.Action), wrote))
	if err != nil || wrote != wantWrote {
		rt.Fatalf("verdict %s (late=%v) on %s %s/%s: wrote=%v err=%v, want wrote=%v", cmd.Action, late, a.id, a.lifecycle, a.trust, wrote, err, wantWrote)
	}
	if wrote {
		if cmd.Action == artifact.ActionVerificationPass {
			a.trust, a.trustReason = "verified", nil
		} else {
			reason := cmd.Reason
			a.trust, a.trustReason = "failed_verification", &reason
		}
		a.revision++
		a.audits++
		s.m.audits++
		s.changed = append(s.changed, a.id)
	}
}

// list reads every page of a filtered list and compares it with the model,
// newest first.
func (s *seqRun) list() {
	rt := s.rt
	name, as := s.drawPersona("caller", "viewer", "operator", "dev")
	q := map[string]string{"limit": strconv.Itoa(rapid.IntRange(1, 5).Draw(rt, "limit"))}
	filter := rapid.SampledFrom([]string{"", "lifecycle_state", "trust_state", "channel"}).Draw(rt, "filter")
	value := ""
	switch filter {
	case "lifecycle_state":
		value = rapid.SampledFrom([]string{"published", "promoted", "deprecated", "retired"}).Draw(rt, "value")
	case "trust_state":
		value = rapid.SampledFrom([]string{"unverified", "verified", "failed_verification", "revoked"}).Draw(rt, "value")
	case "channel":
		value = rapid.SampledFrom([]string{"dev", "staging", "production"}).Draw(rt, "value")
	}
	if filter != "" {
		q[filter] = value
	}
	var want []string
	for i := len(s.m.arts) - 1; i >= 0; i-- {
		a := s.m.arts[i]
		if filter == "" || (filter == "lifecycle_state" && a.lifecycle == value) || (filter == "trust_state" && a.trust == value) ||
			(filter == "channel" && slices.Contains(a.channels, value)) {
			want = append(want, a.id)
		}
	}
	var got []string
	for page := 0; ; page++ {
		if page > len(s.m.arts)+1 {
			rt.Fatalf("list %v: more pages than artifacts", q)
		}
		r := s.call(mcall{route: "list-artifacts", asName: name, as: as, project: s.m.p, query: maps.Clone(q)})
		for _, it := range r.json["items"].([]any) {
			item := it.(map[string]any)
			id := item["artifact_id"].(string)
			got = append(got, id)
			b, _ := json.Marshal(item)
			if a := s.m.find(s.m.p, id); a != nil {
				s.compareBody("list item", resp{body: string(b)}, a)
			}
		}
		next, _ := r.json["next_cursor"].(string)
		if next == "" {
			break
		}
		q["cursor"] = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		rt.Fatalf("list %s=%s: got %v, want %v", filter, value, got, want)
	}
}

// check holds what the step did against the model: the audit rows its
// requests wrote (found by their correlation ids) are exactly the changes the
// model expected, each a legal transition continuing from the artifact's
// previous row, and a changed artifact is stored as the model has it. A
// write without its audit row, or a row under another correlation id, is
// caught by final, which compares every artifact and counts every row.
func (s *seqRun) check() {
	rt := s.rt
	ctx := context.Background()
	var rows []*lifecycle.AuditEvent
	for _, cid := range s.cids {
		rows = append(rows, s.auditRows(cid)...)
	}
	s.cids = s.cids[:0]
	if s.seenRows+len(rows) != s.m.audits {
		rt.Fatalf("%d audit rows, %d successful state-changing mutations", s.seenRows+len(rows), s.m.audits)
	}
	for _, ev := range rows {
		s.checkRow(ev)
		s.changed = append(s.changed, *ev.ArtifactID)
	}
	slices.Sort(s.changed)
	for _, id := range slices.Compact(s.changed) {
		got, _, err := s.store.GetArtifact(ctx, s.m.p, id)
		if err != nil {
			rt.Fatal(err)
		}
		a := s.m.find(s.m.p, id)
		if a == nil || got == nil {
			rt.Fatalf("artifact %s: stored %v, in the model %v", id, got != nil, a != nil)
		}
		s.compareStored(got, a)
	}
	s.changed = s.changed[:0]
}

func (s *seqRun) compareStored(got *artifact.Artifact, a *mArtifact) {
	rt := s.rt
	if d := s.diff(got, a); d != "" {
		rt.Fatalf("stored artifact differs from the model:\n%s", d)
	}
	if prev := s.seen[got.ArtifactID]; prev != nil {
		switch {
		case prev.Lifecycle == artifact.Retired && got.Lifecycle != artifact.Retired:
			rt.Fatalf("%s left retired for %s", got.ArtifactID, got.Lifecycle)
		case prev.Trust == artifact.Revoked && got.Trust != artifact.Revoked:
			rt.Fatalf("%s left revoked for %s", got.ArtifactID, got.Trust)
		case got.Revision < prev.Revision:
			rt.Fatalf("%s revision went back from %d to %d", got.ArtifactID, prev.Revision, got.Revision)
		case artifact.Quarantined(prev.Trust) && !subset(got.Channels, prev.Channels):
			rt.Fatalf("%s gained a channel while quarantined: %v -> %v", got.ArtifactID, prev.Channels, got.Channels)
		}
	}
	if int64(a.audits) != a.revision {
		rt.Fatalf("%s: revision %d after %d recorded changes", a.id, a.revision, a.audits)
	}
	s.seen[got.ArtifactID] = got
}

// auditRow is the part of a stored audit row the checks read.
type auditRow struct {
	SK         string             `dynamodbav:"SK"`
	Action     string             `dynamodbav:"action"`
	ArtifactID *string            `dynamodbav:"artifact_id"`
	Actor      artifact.Principal `dynamodbav:"actor"`
	Before     *artifact.Snapshot `dynamodbav:"before"`
	After      *artifact.Snapshot `dynamodbav:"after"`
}

// auditRows reads the project's audit rows of one correlation id (GSI2),
// oldest first.
func (s *seqRun) auditRows(cid string) []*lifecycle.AuditEvent {
	out, err := s.e.ddb.Query(context.Background(), &dynamodb.QueryInput{
		TableName: aws.String(s.e.table), IndexName: aws.String("GSI2"),
		KeyConditionExpression:    aws.String("GSI2PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: dynamo.AuditByCorrelationKey(s.m.p, cid)}},
		ProjectionExpression:      aws.String("SK, #a, artifact_id, actor, #b, #f"),
		ExpressionAttributeNames:  map[string]string{"#a": "action", "#b": "before", "#f": "after"},
	})
	if err != nil {
		s.rt.Fatal(err)
	}
	var rows []*lifecycle.AuditEvent
	for _, item := range out.Items {
		var r auditRow
		if err := attributevalue.UnmarshalMap(item, &r); err != nil {
			s.rt.Fatal(err)
		}
		for _, sn := range []*artifact.Snapshot{r.Before, r.After} {
			if sn != nil && sn.Channels == nil {
				sn.Channels = []string{}
			}
		}
		rows = append(rows, &lifecycle.AuditEvent{AuditID: r.SK, Action: r.Action, ArtifactID: r.ArtifactID, Actor: r.Actor, Before: r.Before, After: r.After})
	}
	return rows
}

// checkRow: the row is a legal transition that continues from the
// artifact's previous row.
func (s *seqRun) checkRow(ev *lifecycle.AuditEvent) {
	rt := s.rt
	if ev.ArtifactID == nil {
		rt.Fatalf("audit row %s (%s) without artifact_id", ev.AuditID, ev.Action)
	}
	id := *ev.ArtifactID
	if err := legalRow(ev); err != nil {
		rt.Fatalf("audit row %s (%s %s): %v", ev.AuditID, ev.Action, id, err)
	}
	if prev := s.lastSnap[id]; ev.Action != "app_artifact.register" && (prev == nil || !sameSnap(prev, ev.Before)) {
		rt.Fatalf("audit row %s (%s %s): before %+v does not continue from the previous row's after %+v", ev.AuditID, ev.Action, id, ev.Before, prev)
	}
	s.lastSnap[id] = ev.After
	s.rowsPer[id]++
	s.seenRows++
}

// storedArtifact is the part of a stored artifact item final compares.
type storedArtifact struct {
	ArtifactID  string                  `dynamodbav:"artifact_id"`
	ProjectID   string                  `dynamodbav:"project_id"`
	AppSlug     string                  `dynamodbav:"app_slug"`
	AppVersion  string                  `dynamodbav:"app_version"`
	Digest      string                  `dynamodbav:"digest"`
	Lifecycle   artifact.LifecycleState `dynamodbav:"lifecycle_state"`
	Trust       artifact.TrustState     `dynamodbav:"trust_state"`
	TrustReason *string                 `dynamodbav:"trust_reason"`
	Channels    []string                `dynamodbav:"channels"`
	Revision    int64                   `dynamodbav:"revision"`
}

// final reads the whole table (one sequence's) and compares it with the
// model: every artifact as the model has it, one audit row per successful
// state-changing mutation of each, an idempotency record for each successful
// request and none for a failed one, two uniqueness guards per artifact, one
// project item (the project the foreign-project calls used has none).
func (s *seqRun) final() {
	rt := s.rt
	entities := map[string]int{}
	per := map[string]int{}
	var start map[string]types.AttributeValue
	for {
		out, err := s.e.ddb.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(s.e.table), ExclusiveStartKey: start})
		if err != nil {
			rt.Fatal(err)
		}
		for _, item := range out.Items {
			var ent struct {
				Entity     string  `dynamodbav:"entity"`
				ProjectID  string  `dynamodbav:"project_id"`
				ArtifactID *string `dynamodbav:"artifact_id"`
			}
			if err := attributevalue.UnmarshalMap(item, &ent); err != nil {
				rt.Fatal(err)
			}
			entities[ent.Entity]++
			if ent.ProjectID != s.m.p && ent.Entity != "guard" {
				rt.Fatalf("a %s item of project %q; only %s was written to", ent.Entity, ent.ProjectID, s.m.p)
			}
			switch ent.Entity {
			case "audit":
				if ent.ArtifactID != nil {
					per[*ent.ArtifactID]++
				}
			case "artifact":
				var got storedArtifact
				if err := attributevalue.UnmarshalMap(item, &got); err != nil {
					rt.Fatal(err)
				}
				if got.Channels == nil {
					got.Channels = []string{}
				}
				a := s.m.find(got.ProjectID, got.ArtifactID)
				if a == nil {
					rt.Fatalf("stored artifact %s is not in the model", got.ArtifactID)
				}
				s.compareStored(&artifact.Artifact{ArtifactID: got.ArtifactID, AppSlug: got.AppSlug, AppVersion: got.AppVersion,
					Digest: got.Digest, Lifecycle: got.Lifecycle, Trust: got.Trust, TrustReason: got.TrustReason,
					Channels: got.Channels, Revision: got.Revision}, a)
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	want := map[string]int{"artifact": len(s.m.arts), "audit": s.m.audits, "idempotency": len(s.m.stored), "guard": 2 * len(s.m.arts), "project": 1}
	if fmt.Sprint(entities) != fmt.Sprint(want) {
		rt.Fatalf("stored items by entity %v, model %v", entities, want)
	}
	if s.seenRows != s.m.audits {
		rt.Fatalf("the step checks saw %d audit rows of %d", s.seenRows, s.m.audits)
	}
	for _, a := range s.m.arts {
		if per[a.id] != a.audits || s.rowsPer[a.id] != a.audits {
			rt.Fatalf("%s: %d audit rows (%d seen by the step checks), model %d successful mutations", a.id, per[a.id], s.rowsPer[a.id], a.audits)
		}
	}
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func sameSnap(a, b *artifact.Snapshot) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Lifecycle == b.Lifecycle && a.Trust == b.Trust && slices.Equal(a.Channels, b.Channels)
}

// legalRow checks that an audit row records a transition SPEC section 5
// allows, from its before and after alone.
func legalRow(ev *lifecycle.AuditEvent) error {
	b, a := ev.Before, ev.After
	if ev.Action == "app_artifact.register" {
		if b != nil || a == nil || a.Lifecycle != artifact.Published || a.Trust != artifact.Unverified || len(a.Channels) != 0 {
			return fmt.Errorf("register: before %+v after %+v", b, a)
		}
		return nil
	}
	if b == nil || a == nil {
		return fmt.Errorf("before %+v after %+v", b, a)
	}
	if artifact.Quarantined(b.Trust) && !subset(a.Channels, b.Channels) {
		return fmt.Errorf("quarantined artifact gained a channel: %v -> %v", b.Channels, a.Channels)
	}
	active := b.Lifecycle == artifact.Published || b.Lifecycle == artifact.Promoted
	sameTrust, sameLife, sameCh := a.Trust == b.Trust, a.Lifecycle == b.Lifecycle, slices.Equal(a.Channels, b.Channels)
	ok := false
	switch ev.Action {
	case "app_artifact.promote":
		ok = active && !artifact.Quarantined(b.Trust) && a.Lifecycle == artifact.Promoted && sameTrust &&
			len(a.Channels) == len(b.Channels)+1 && slices.Equal(a.Channels[:len(b.Channels)], b.Channels) && !slices.Contains(b.Channels, a.Channels[len(b.Channels)])
	case "app_artifact.deprecate":
		ok = active && !artifact.Quarantined(b.Trust) && a.Lifecycle == artifact.Deprecated && sameTrust && sameCh
	case "app_artifact.retire":
		ok = b.Lifecycle == artifact.Deprecated && a.Lifecycle == artifact.Retired && sameTrust && len(a.Channels) == 0
	case "app_artifact.revoke":
		ok = b.Trust != artifact.Revoked && a.Trust == artifact.Revoked && sameLife && sameCh
	case "app_artifact.verify":
		verdict := b.Trust == artifact.Unverified && (a.Trust == artifact.Verified || a.Trust == artifact.FailedVerification) && ev.Actor == lifecycle.Verifier
		request := b.Trust == artifact.FailedVerification && a.Trust == artifact.Unverified && ev.Actor != lifecycle.Verifier
		ok = sameLife && sameCh && (verdict || request)
	default:
		return fmt.Errorf("unexpected action")
	}
	if !ok {
		return fmt.Errorf("illegal transition %+v -> %+v by %s", *b, *a, ev.Actor.PrincipalID)
	}
	return nil
}
