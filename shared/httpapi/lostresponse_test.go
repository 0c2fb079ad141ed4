package httpapi_test

// Lost responses (issue 6, item 2): a client whose answer is lost on ~10%
// of its mutations (the handler ran, and committed if it succeeded, but the
// client never saw the answer) sends the same request again with the same
// idempotency key, body and correlation id, and again while answers keep
// getting lost. Over the run (SPEC sections 6 and 7):
//
//   - every retry gets the first answer byte for byte; after a success it
//     is a replay (Idempotent-Replayed: true), after a refusal (which stored
//     nothing) the request runs again and is refused the same way;
//   - no duplicate transition: each artifact's revision is 1 + the number of
//     distinct successful changes the client saw;
//   - no duplicate audit row: audit rows per artifact equal those changes,
//     and no two audit rows share an idempotency key;
//   - one idempotency record per successful request, none for refusals.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const (
	// lostDropRate is the share of answers the client loses, retries included.
	lostDropRate = 0.10
	// lostMutations is the size make test runs; SOAK=1 runs lostSoakMutations.
	lostMutations     = 1000
	lostSoakMutations = 10000
	lostSeed          = 6
)

// lostRun sizes a run.
type lostRun struct {
	mutations int // committed mutations to make
	clients   int // concurrent clients
	seed      uint64
	// faultRate is the share of sends that get a random fault from the
	// fault matrix (faults_test.go) on one of their DynamoDB calls; the
	// client retries a 503 (and a 409 concurrent_update) with the same key.
	faultRate float64
}

// TestLostResponse: 1,000 committed mutations over 4 concurrent clients.
func TestLostResponse(t *testing.T) {
	runLostResponse(t, lostRun{mutations: lostMutations, clients: 4, seed: lostSeed})
}

// TestFaultsLostResponse: lost answers and random DynamoDB faults together,
// 300 committed mutations, a fault on 20% of sends.
func TestFaultsLostResponse(t *testing.T) {
	runLostResponse(t, lostRun{mutations: 300, clients: 4, seed: lostSeed, faultRate: 0.2})
}

func soakSeed(t *testing.T) uint64 {
	if os.Getenv("SOAK") == "" {
		t.Skip("SOAK=1 runs it (make soak)")
	}
	if s, err := strconv.ParseUint(os.Getenv("SOAK_SEED"), 10, 64); err == nil {
		return s
	}
	return uint64(time.Now().UnixNano())
}

// TestSoakLostResponse: 10,000 committed mutations over 8 clients (make soak).
func TestSoakLostResponse(t *testing.T) {
	runLostResponse(t, lostRun{mutations: lostSoakMutations, clients: 8, seed: soakSeed(t)})
}

// TestSoakFaultsLostResponse: 3,000 committed mutations with faults (make soak).
func TestSoakFaultsLostResponse(t *testing.T) {
	runLostResponse(t, lostRun{mutations: 3000, clients: 8, seed: soakSeed(t), faultRate: 0.2})
}

// lostBatchSize is the mutations one client sends to one table. minidyn
// copies the whole table on every TransactWriteItems (to roll back), so a
// transaction costs time in proportion to the table; the run spreads over
// tables of this many mutations to keep that flat.
const lostBatchSize = 25

// lostArtifact is what one client knows of an artifact it registered.
type lostArtifact struct {
	id               string
	revision         int // as last answered
	changes          int // successful mutations that moved it (the register excluded)
	lifecycle, trust string
	channels         []string
}

func (a *lostArtifact) saw(r resp) {
	a.revision = lostRevision(r)
	a.lifecycle, a.trust = r.str("lifecycle_state"), r.str("trust_state")
	a.channels = a.channels[:0]
	if chs, ok := r.json["channels"].([]any); ok {
		for _, ch := range chs {
			s, _ := ch.(string)
			a.channels = append(a.channels, s)
		}
	}
}

// legal lists what the SPEC's state machines allow next (section 5).
func (a *lostArtifact) legal() []string {
	quarantined := a.trust == "failed_verification" || a.trust == "revoked"
	var ops []string
	// Weighted: promotions most, revocations least (they quarantine).
	if (a.lifecycle == "published" || a.lifecycle == "promoted") && !quarantined {
		ops = append(ops, "promote", "promote", "promote", "deprecate", "deprecate")
	}
	if a.lifecycle == "deprecated" {
		ops = append(ops, "retire", "retire")
	}
	if a.trust != "revoked" && len(ops) > 0 {
		ops = append(ops, "revoke")
	}
	return ops
}

// lostBatch is one client's mutations on one table; nobody else writes
// there, so what the client saw is what the table must hold.
type lostBatch struct {
	e         *env
	inj       *faultInjector // nil: no faults
	n         int            // committed mutations to make
	requests  int            // mutations sent (refused ones included)
	arts      []*lostArtifact
	successes int // first answers 2xx (each stores one idempotency record)
	changes   int // successes that changed state (registers included)
}

// lostClient is one client: its batches, in turn.
type lostClient struct {
	n         int
	rng       *rand.Rand
	batches   []*lostBatch
	faultRate float64

	faults       map[faultName]int // injected faults that fired, by kind
	faultAnswers map[string]int    // what the faulted sends answered
	faultRetries int               // same-key retries after a 503 or 409 concurrent_update

	firsts    map[string]int // op and status of first answers
	noops     int            // successes without a change (promote into a held channel)
	dropped   int            // requests whose answer was lost at least once
	droppedOK int            // ... of them after a commit
	retries   int            // same-key retries sent
	replays   int            // retries answered by a replay, byte-identical
	reruns    int            // retries of a refusal, refused again byte-identically
}

func lostRevision(r resp) int {
	n, _ := r.json["revision"].(float64)
	return int(n)
}

// next picks a mutation: a register now and then, otherwise an action on
// one of the newest artifacts, usually one its state allows (as a client
// that reads its answers would) and sometimes any (which the service
// refuses without writing).
func (c *lostClient) next(b *lostBatch, key string, i int) (req, *lostArtifact, string) {
	hdr := map[string]string{"x-correlation-id": "cid-" + key}
	var a *lostArtifact
	op := "register"
	if len(b.arts) > 0 && c.rng.IntN(100) >= 15 {
		a = b.arts[len(b.arts)-1-c.rng.IntN(min(4, len(b.arts)))]
		ops := a.legal()
		if c.rng.IntN(100) < 10 {
			ops = []string{"promote", "promote", "deprecate", "retire", "revoke"}
		}
		if len(ops) == 0 {
			a, ops = nil, []string{"register"}
		}
		op = ops[c.rng.IntN(len(ops))]
	}
	r := req{idemKey: key, headers: hdr}
	if a != nil {
		r.artifact = a.id
	}
	switch op {
	case "register":
		r.route, r.as = "register-artifact", dev(projectA)
		r.body = registerBody(projectA, fmt.Sprintf("lost-app-%d", c.n), fmt.Sprintf("1.0.%d", i), digest(10_000_000+i))
		return r, nil, op
	case "promote":
		ch := []string{"dev", "staging", "dev", "staging", "production"}[c.rng.IntN(5)]
		r.route, r.as, r.body = "promote-artifact", admin(projectA), fmt.Sprintf(`{"channel":%q}`, ch)
	case "deprecate":
		r.route, r.as, r.body = "deprecate-artifact", dev(projectA), `{"reason":"superseded"}`
	case "retire":
		r.route, r.as, r.body = "retire-artifact", admin(projectA), `{"reason":"end of life"}`
	case "revoke":
		r.route, r.as, r.body = "revoke-artifact", platform("trust_admin"), `{"reason":"key rotated"}`
	}
	return r, a, op
}

func (c *lostClient) run(t *testing.T) {
	seq := 0
	for _, b := range c.batches {
		for b.successes < b.n && b.requests < 10*b.n {
			seq++
			b.requests++
			c.mutate(t, b, seq)
		}
		if b.successes < b.n {
			t.Errorf("%s: %d successes in %d requests", b.e.table, b.successes, b.requests)
		}
	}
}

func (c *lostClient) mutate(t *testing.T, b *lostBatch, i int) {
	key := fmt.Sprintf("lost-%d-%05d", c.n, i)
	r, a, op := c.next(b, key, i)
	first := c.send(t, b, r, op)
	c.firsts[fmt.Sprintf("%s %d", op, first.status)]++
	ok := first.status >= 200 && first.status < 300
	switch {
	case first.status >= 500:
		t.Errorf("%s %s: %d %s", op, key, first.status, first.body)
		return
	case ok && a == nil:
		a = &lostArtifact{id: first.str("artifact_id")}
		a.saw(first)
		b.arts = append(b.arts, a)
		b.successes++
		b.changes++
	case ok:
		b.successes++
		switch rev := lostRevision(first); rev {
		case a.revision + 1:
			a.changes++
			b.changes++
		case a.revision:
			c.noops++
		default:
			t.Errorf("%s %s on %s: revision %d after %d", op, key, a.id, rev, a.revision)
		}
		a.saw(first)
	}
	if c.rng.Float64() >= lostDropRate {
		return
	}
	// The answer is lost: send the request again until an answer gets through.
	c.dropped++
	if ok {
		c.droppedOK++
	}
	for {
		again := b.e.do(r)
		c.retries++
		if again.status != first.status || again.body != first.body {
			t.Errorf("%s %s: retry answered %d, not the first answer %d:\n%s\n%s", op, key, again.status, first.status, again.body, first.body)
		}
		switch replayed := again.headers["Idempotent-Replayed"] == "true"; {
		case ok && replayed:
			c.replays++
		case !ok && !replayed:
			c.reruns++
		default:
			t.Errorf("%s %s: first %d, retry %d with Idempotent-Replayed=%v", op, key, first.status, again.status, replayed)
		}
		if c.rng.Float64() >= lostDropRate {
			return
		}
	}
}

// send gets a definitive answer to r: with faults on, a send may get a
// random fault on one of its DynamoDB calls, and a 503 (or a 409
// concurrent_update) is sent again with the same key until the answer is
// something else. A fault that fails before the commit must leave the table
// as it was.
func (c *lostClient) send(t *testing.T, b *lostBatch, r req, op string) resp {
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatalf("%s %s: no definitive answer after %d sends", op, r.idemKey, try)
		}
		if b.inj == nil || c.rng.Float64() >= c.faultRate {
			res := b.e.do(r)
			if res.status >= 500 || res.reason() == "concurrent_update" {
				t.Errorf("%s %s: %d %s without a fault", op, r.idemKey, res.status, res.body)
			}
			return res
		}
		ops := []string{opBatchGet, opTransact}
		if op == "register" {
			ops = ops[1:]
		}
		dbop := ops[c.rng.IntN(len(ops))]
		var specs []faultSpec
		for _, fs := range faultSpecs {
			if fs.appliesTo(dbop) {
				specs = append(specs, fs)
			}
		}
		fs := specs[c.rng.IntN(len(specs))]
		before := ""
		if fs.outcome == outUnavailable || fs.outcome == outRefused {
			before = b.e.dump()
		}
		b.inj.arm(faultRule{dbop, 1, fs.name, fs.sticky})
		res := b.e.do(r)
		if b.inj.disarm() > 0 {
			c.faults[fs.name]++
		}
		answer := strconv.Itoa(res.status)
		if res.headers["Idempotent-Replayed"] == "true" {
			answer += " replayed"
		}
		c.faultAnswers[answer]++
		switch {
		case res.status == 503:
			if s, err := strconv.Atoi(res.headers["Retry-After"]); err != nil || s < 1 || res.errCode() != "service_unavailable" {
				t.Errorf("%s %s under %s: 503 without service_unavailable and Retry-After: %s", op, r.idemKey, fs.name, res.body)
			}
		case res.status == 409 && res.reason() == "concurrent_update":
		case res.status >= 500:
			t.Errorf("%s %s under %s: %d %s", op, r.idemKey, fs.name, res.status, res.body)
			return res
		default:
			return res
		}
		if before != "" && b.e.dump() != before {
			t.Errorf("%s %s under %s: answered %d but changed the table", op, r.idemKey, fs.name, res.status)
		}
		c.faultRetries++
	}
}

// lostFigures is the run's totals.
type lostFigures struct {
	tables, requests, artifacts, successes, changes, noops, audits, idem int
	dropped, droppedOK, retries, replays, reruns                         int
	dupTransitions, dupAudits, dupKeys                                   int
	faultRetries                                                         int
	firsts, faults, faultAnswers                                         map[string]int
}

func lostCounts(m map[string]int) string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func runLostResponse(t *testing.T, run lostRun) {
	mutations, clients, seed := run.mutations, run.clients, run.seed
	// Every table is made before any request runs (minidyn's CreateTable
	// is not safe alongside requests).
	cs := make([]*lostClient, clients)
	for n := range cs {
		cs[n] = &lostClient{n: n, rng: rand.New(rand.NewPCG(seed, uint64(n))), firsts: map[string]int{},
			faultRate: run.faultRate, faults: map[faultName]int{}, faultAnswers: map[string]int{}}
		share := mutations / clients
		if n < mutations%clients {
			share++
		}
		for share > 0 {
			b := &lostBatch{n: min(share, lostBatchSize)}
			if run.faultRate > 0 {
				b.e, b.inj = newFaultEnv(t, 1)
			} else {
				b.e = newTableEnv(t)
			}
			cs[n].batches = append(cs[n].batches, b)
			share -= b.n
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.run(t) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	f := lostFigures{firsts: map[string]int{}, faults: map[string]int{}, faultAnswers: map[string]int{}}
	for _, c := range cs {
		for _, b := range c.batches {
			f.tables++
			checkLostBatch(t, b, &f)
		}
		for k, v := range c.firsts {
			f.firsts[k] += v
		}
		f.noops += c.noops
		f.dropped += c.dropped
		f.droppedOK += c.droppedOK
		f.retries += c.retries
		f.replays += c.replays
		f.reruns += c.reruns
		f.faultRetries += c.faultRetries
		for k, v := range c.faults {
			f.faults[string(k)] += v
		}
		for k, v := range c.faultAnswers {
			f.faultAnswers[k] += v
		}
	}
	if f.retries != f.replays+f.reruns {
		t.Errorf("%d retries, %d converged", f.retries, f.replays+f.reruns)
	}
	outcomes := []string{lostCounts(f.firsts)}
	if run.faultRate > 0 {
		n := 0
		for _, v := range f.faults {
			n += v
		}
		t.Logf("faults: %d injected (%s); faulted sends answered %s; %d same-key retries after a 503 or 409 concurrent_update",
			n, lostCounts(f.faults), lostCounts(f.faultAnswers), f.faultRetries)
	}
	t.Logf("lost responses: %d committed mutations (%d sent, refusals included) by %d concurrent clients over %d tables (seed %d) in %v; first answers %s",
		f.successes, f.requests, clients, f.tables, seed, elapsed.Round(time.Millisecond), strings.Join(outcomes, " "))
	if f.successes < mutations {
		t.Errorf("%d committed mutations, want %d", f.successes, mutations)
	}
	t.Logf("%d answers lost (%d after a commit, %d after a refusal), %d same-key retries: %d byte-identical replays, %d byte-identical re-refusals",
		f.dropped, f.droppedOK, f.dropped-f.droppedOK, f.retries, f.replays, f.reruns)
	t.Logf("%d artifacts, %d successes (%d changes, %d no-ops), %d audit rows, %d idempotency records; duplicate transitions %d, duplicate audit rows %d, audit rows sharing an idempotency key %d",
		f.artifacts, f.successes, f.changes, f.noops, f.audits, f.idem, f.dupTransitions, f.dupAudits, f.dupKeys)
}

// checkLostBatch holds one table to what its client saw.
func checkLostBatch(t *testing.T, b *lostBatch, f *lostFigures) {
	revision := map[string]int{}
	auditRows := map[string]map[string]int{} // artifact -> action -> rows
	keys := map[string]int{}                 // actor|idempotency key -> audit rows
	idem, audits := 0, 0
	for _, it := range faultScan(t, b.e.table) {
		switch faultAttr(it, "entity") {
		case "artifact":
			revision[faultAttr(it, "artifact_id")], _ = strconv.Atoi(faultAttr(it, "revision"))
		case "idempotency":
			idem++
		case "audit":
			audits++
			id := faultAttr(it, "artifact_id")
			if auditRows[id] == nil {
				auditRows[id] = map[string]int{}
			}
			auditRows[id][faultAttr(it, "action")]++
			keys[lostActor(it)+"|"+faultAttr(it, "idempotency_key")]++
		}
	}
	for _, a := range b.arts {
		rows := 0
		for action, n := range auditRows[a.id] {
			if action != "app_artifact.register" {
				rows += n
			}
		}
		if got := revision[a.id]; got != 1+a.changes || got != a.revision {
			f.dupTransitions += got - 1 - a.changes
			t.Errorf("%s: stored revision %d, the client saw %d changes (revision %d)", a.id, got, a.changes, a.revision)
		}
		if reg := auditRows[a.id]["app_artifact.register"]; rows != a.changes || reg != 1 {
			f.dupAudits += rows - a.changes + reg - 1
			t.Errorf("%s: %d transition audit rows and %d register rows for %d changes", a.id, rows, reg, a.changes)
		}
	}
	for k, n := range keys {
		if n > 1 {
			f.dupKeys += n - 1
			t.Errorf("%s: %d audit rows share the idempotency scope %s", b.e.table, n, k)
		}
	}
	if audits != b.changes {
		t.Errorf("%s: %d audit rows for %d successful changes", b.e.table, audits, b.changes)
	}
	if idem != b.successes {
		t.Errorf("%s: %d idempotency records for %d successful requests", b.e.table, idem, b.successes)
	}
	if len(revision) != len(b.arts) {
		t.Errorf("%s: %d artifacts stored, the client registered %d", b.e.table, len(revision), len(b.arts))
	}
	f.artifacts += len(b.arts)
	f.requests += b.requests
	f.successes += b.successes
	f.changes += b.changes
	f.audits += audits
	f.idem += idem
}

// lostActor is the principal of an audit row.
func lostActor(it map[string]types.AttributeValue) string {
	m, ok := it["actor"].(*types.AttributeValueMemberM)
	if !ok {
		return ""
	}
	b, _ := json.Marshal(faultAttr(m.Value, "principal_id"))
	return string(b)
}
