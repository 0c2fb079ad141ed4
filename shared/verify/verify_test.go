package verify_test

// The verifier against the real store (minidyn through the real SDK, table
// from template.yaml) and the real lifecycle service. The registry is the one
// thing replaced: a Registry whose manifest answers, and what happens while it is
// being asked, each test scripts, so that a race that takes a slow registry
// on AWS can be made to happen every time.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/signature"
	"github.com/gpuaas/app-artifacts/shared/verify"
)

const (
	org       = "org-verify"
	project   = "proj-verify"
	host      = "127.0.0.1:5000"
	mediaType = "application/vnd.oci.image.manifest.v1+json"
)

// scripted answers the n-th manifest read (from 0) with answer(n), after
// running during(n), which is where a test makes the artifact move.
type scripted struct {
	signature.Source // unused: these projects require no signatures
	calls            atomic.Int64
	answer           func(n int64) ([]byte, string, error)
	during           func(n int64)
}

func (s *scripted) ImageManifest(_ context.Context, _, _ string) ([]byte, string, error) {
	n := s.calls.Add(1) - 1
	if s.during != nil {
		s.during(n)
	}
	return s.answer(n)
}

type env struct {
	t     *testing.T
	svc   *lifecycle.Service
	store *dynamo.Table
	n     int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mini := ddbtest.Start(t)
	table := mini.NewTable(t)
	client := mini.Client()
	svc, err := app.NewService(&app.Config{TableName: table, RegistryHost: host, CursorSecret: strings.Repeat("v", 32), Stage: "test"}, client)
	if err != nil {
		t.Fatal(err)
	}
	svc.Sleep = func(context.Context, int) {}
	return &env{t: t, svc: svc, store: dynamo.New(client, table)}
}

func (e *env) request(principal string, ps ...artifact.Permission) *lifecycle.Request {
	e.n++
	perms := map[artifact.Permission]bool{}
	for _, p := range ps {
		perms[p] = true
	}
	return &lifecycle.Request{
		Caller: lifecycle.Caller{
			Principal: artifact.Principal{PrincipalID: principal, PrincipalType: artifact.PrincipalUser},
			OrgID:     org, Perms: perms, CorrelationID: fmt.Sprintf("cid-%d", e.n),
		},
		ProjectID: project, IdemKey: fmt.Sprintf("idem-%04d", e.n), Fingerprint: fmt.Sprintf("fp-%d", e.n),
	}
}

func (e *env) must(res *lifecycle.Result, err error) map[string]any {
	e.t.Helper()
	if err != nil || res.Status/100 != 2 {
		e.t.Fatalf("mutation: %v %+v", err, res)
	}
	var body map[string]any
	if err := json.Unmarshal(res.Body, &body); err != nil {
		e.t.Fatal(err)
	}
	return body
}

// register stores an artifact whose digest is that of manifest and returns
// its id and the audit id of its registration (the verifier's trigger).
func (e *env) register(manifest []byte) (string, string) {
	e.t.Helper()
	sum := sha256.Sum256(manifest)
	body := e.must(e.svc.Register(context.Background(), e.request("alice", artifact.PermPublish), &lifecycle.RegisterInput{
		AppSlug: aws.String("vision-api"), AppVersion: aws.String("1.0.0"),
		Repository: aws.String(host + "/" + artifact.RepositoryName(org, project, "vision-api")),
		Digest:     aws.String("sha256:" + hex.EncodeToString(sum[:])), DigestAlgorithm: aws.String("sha256"),
		Kind: aws.String("container_image"), SourceType: aws.String("platform_push"), MediaType: aws.String(mediaType),
	}))
	return body["artifact_id"].(string), fmt.Sprintf("aud-register-%d", e.n)
}

func (e *env) verifier(m verify.Registry) *verify.Verifier {
	return &verify.Verifier{Store: e.store, Service: e.svc, Registry: m,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Now: time.Now}
}

func (e *env) deliver(v *verify.Verifier, id, auditID string) error {
	detail, _ := json.Marshal(map[string]any{"audit_id": auditID, "project_id": project, "artifact_id": id, "correlation_id": "cid-event"})
	return v.Handle(context.Background(), events.EventBridgeEvent{ID: "ev-" + auditID, DetailType: "App Artifact Registered", Detail: detail})
}

func (e *env) artifact(id string) *artifact.Artifact {
	e.t.Helper()
	a, _, err := e.store.GetArtifact(context.Background(), project, id)
	if err != nil || a == nil {
		e.t.Fatalf("read %s: %v", id, err)
	}
	return a
}

var manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)

// TestVerdictIsDecidedForTheRevisionItIsWrittenOn: while the verifier reads
// the registry (which does not have the image yet), the artifact goes through
// another verdict and a trust_admin's re-verification, and the image arrives.
// The first reading's verdict (digest_not_found) is stale: it must not land
// on the re-verified artifact. The verifier reads again and decides afresh.
func TestVerdictIsDecidedForTheRevisionItIsWrittenOn(t *testing.T) {
	e := newEnv(t)
	id, trigger := e.register(manifest)
	reg := &scripted{
		answer: func(n int64) ([]byte, string, error) {
			if n == 0 {
				return nil, "", ecr.ErrNotFound
			}
			return manifest, mediaType, nil
		},
		during: func(n int64) {
			if n != 0 {
				return
			}
			// A duplicate delivery of the same event, answered by a registry
			// replica that already saw nothing: digest_not_found ...
			other := e.verifier(&scripted{answer: func(int64) ([]byte, string, error) { return nil, "", ecr.ErrNotFound }})
			if err := e.deliver(other, id, trigger); err != nil {
				t.Errorf("other delivery: %v", err)
			}
			// ... which the trust owner sends back for verification.
			e.must(e.svc.Transition(context.Background(), e.request("trent", artifact.PermTrust), id, artifact.Command{Action: artifact.ActionRequestVerify}))
		},
	}
	if err := e.deliver(e.verifier(reg), id, trigger); err != nil {
		t.Fatal(err)
	}
	a := e.artifact(id)
	if a.Trust != artifact.Verified || a.TrustReason != nil || a.Revision != 4 {
		t.Fatalf("after the race: trust %s reason %v revision %d, want verified, no reason, revision 4 (register, verdict, re-verify, verdict)", a.Trust, a.TrustReason, a.Revision)
	}
	if got := reg.calls.Load(); got != 2 {
		t.Fatalf("registry read %d times, want 2 (the stale reading, then a fresh one)", got)
	}
}

// TestVerdictSurvivesALifecycleChange: a promotion while the registry is
// read moves the revision; the verifier decides again on the new revision
// and writes one verdict, keeping the promotion.
func TestVerdictSurvivesALifecycleChange(t *testing.T) {
	e := newEnv(t)
	id, trigger := e.register(manifest)
	reg := &scripted{
		answer: func(int64) ([]byte, string, error) { return manifest, mediaType, nil },
		during: func(n int64) {
			if n == 0 {
				e.must(e.svc.Transition(context.Background(), e.request("alice", artifact.PermPromote), id, artifact.Command{Action: artifact.ActionPromote, Channel: "dev"}))
			}
		},
	}
	if err := e.deliver(e.verifier(reg), id, trigger); err != nil {
		t.Fatal(err)
	}
	a := e.artifact(id)
	if a.Trust != artifact.Verified || a.Revision != 3 || strings.Join(a.Channels, ",") != "dev" {
		t.Fatalf("trust %s revision %d channels %v, want verified, 3, [dev]", a.Trust, a.Revision, a.Channels)
	}
	if got := reg.calls.Load(); got != 2 {
		t.Fatalf("registry read %d times, want 2", got)
	}
}

// TestDigestMismatch: the registry answers bytes whose sha256 is not the
// digest asked for (a registry or cache that serves the wrong content).
func TestDigestMismatch(t *testing.T) {
	e := newEnv(t)
	id, trigger := e.register(manifest)
	tampered := append([]byte(nil), manifest...)
	tampered = append(tampered, '\n')
	reg := &scripted{answer: func(int64) ([]byte, string, error) { return tampered, mediaType, nil }}
	if err := e.deliver(e.verifier(reg), id, trigger); err != nil {
		t.Fatal(err)
	}
	a := e.artifact(id)
	if a.Trust != artifact.FailedVerification || a.TrustReason == nil || *a.TrustReason != verify.DigestMismatch {
		t.Fatalf("trust %s reason %v, want failed_verification/digest_mismatch", a.Trust, a.TrustReason)
	}
}

// TestTransientRegistryErrorIsNoVerdict: an error that is not "not found"
// goes back to the caller (so the event is retried) and writes nothing.
func TestTransientRegistryErrorIsNoVerdict(t *testing.T) {
	e := newEnv(t)
	id, trigger := e.register(manifest)
	reg := &scripted{answer: func(int64) ([]byte, string, error) { return nil, "", fmt.Errorf("ecr: throttled") }}
	if err := e.deliver(e.verifier(reg), id, trigger); err == nil {
		t.Fatal("a throttled registry read gave no error")
	}
	if a := e.artifact(id); a.Trust != artifact.Unverified || a.Revision != 1 {
		t.Fatalf("trust %s revision %d after a transient error, want unverified, 1", a.Trust, a.Revision)
	}
}
