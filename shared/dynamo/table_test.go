package dynamo_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

func caller(cid string) *lifecycle.Request {
	return &lifecycle.Request{
		Caller: lifecycle.Caller{
			Principal: artifact.Principal{PrincipalID: "dev-1", PrincipalType: artifact.PrincipalUser}, OrgID: "org-a",
			Perms:         map[artifact.Permission]bool{artifact.PermRead: true, artifact.PermPublish: true, artifact.PermPromote: true, artifact.PermDeprecate: true},
			CorrelationID: cid,
		},
		ProjectID: "proj-a", IdemKey: "key-" + cid, Fingerprint: "fp-" + cid,
	}
}

func strp(s string) *string { return &s }

func TestAuditAccessPatterns(t *testing.T) {
	srv := ddbtest.Start(t)
	table := srv.NewTable(t)
	store := dynamo.New(srv.Client(), table)
	n := 0
	svc := &lifecycle.Service{Store: store, RegistryHost: "reg.example", Now: time.Now,
		NewID: func(p string) string { n++; return fmt.Sprintf("%s_%04d", p, n) }}
	ctx := context.Background()
	var ids []string
	for i := range 2 {
		res, err := svc.Register(ctx, caller(fmt.Sprint("reg-", i)), &lifecycle.RegisterInput{
			AppSlug: strp("app"), AppVersion: strp(fmt.Sprint("v", i)), Repository: strp("reg.example/gpuaas/org-a/proj-a/app"),
			Digest: strp(fmt.Sprintf("sha256:%064d", i)), DigestAlgorithm: strp("sha256"), Kind: strp("container_image"),
			SourceType: strp("platform_push"), MediaType: strp("application/vnd.oci.image.manifest.v1+json"),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ArtifactID)
	}
	if _, err := svc.Transition(ctx, caller("promote-0"), ids[0], artifact.Command{Action: artifact.ActionPromote, Channel: "dev"}); err != nil {
		t.Fatal(err)
	}
	actions := func(evs []*lifecycle.AuditEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Action+"@"+e.CorrelationID)
		}
		sort.Strings(out)
		return out
	}
	for _, c := range []struct {
		name string
		q    lifecycle.AuditQuery
		want []string
	}{
		{"by artifact", lifecycle.AuditQuery{ArtifactID: ids[0]}, []string{"app_artifact.promote@promote-0", "app_artifact.register@reg-0"}},
		{"by correlation id", lifecycle.AuditQuery{CorrelationID: "reg-1"}, []string{"app_artifact.register@reg-1"}},
		{"whole project", lifecycle.AuditQuery{}, []string{"app_artifact.promote@promote-0", "app_artifact.register@reg-0", "app_artifact.register@reg-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			page, err := store.AuditEvents(ctx, "proj-a", c.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, actions(page.Items)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	page, _ := store.AuditEvents(ctx, "proj-a", lifecycle.AuditQuery{CorrelationID: "promote-0"})
	evs := page.Items
	want := &lifecycle.AuditEvent{
		AuditID: evs[0].AuditID, Action: "app_artifact.promote", OrgID: "org-a", ProjectID: "proj-a", ArtifactID: &ids[0],
		Actor: artifact.Principal{PrincipalID: "dev-1", PrincipalType: "user"}, CorrelationID: "promote-0", IdempotencyKey: "key-promote-0",
		Before:  &artifact.Snapshot{Lifecycle: "published", Trust: "unverified", Channels: []string{}},
		After:   &artifact.Snapshot{Lifecycle: "promoted", Trust: "unverified", Channels: []string{"dev"}},
		Details: map[string]any{"channel": "dev"}, OccurredAt: evs[0].OccurredAt,
	}
	if diff := cmp.Diff(want, evs[0]); diff != "" {
		t.Fatalf("audit row (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(evs[0].AuditID, "aud_") {
		t.Fatalf("audit id %q", evs[0].AuditID)
	}
}

// recordQueries keeps every Query input the store sends.
type recordQueries struct {
	dynamo.API
	queries []*dynamodb.QueryInput
}

func (r *recordQueries) Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	r.queries = append(r.queries, in)
	return r.API.Query(ctx, in, opts...)
}

// TestIntentsForReadsConsistently: the registrar finds an intent through a
// consistent Query on the table (a Query on a global secondary index cannot
// be consistent, and a push can follow its intent by milliseconds), newest
// first, each intent read back whole, across projects of one repository name.
func TestIntentsForReadsConsistently(t *testing.T) {
	srv := ddbtest.Start(t)
	table := srv.NewTable(t)
	rec := &recordQueries{API: srv.Client()}
	store := dynamo.New(rec, table)
	n := 0
	svc := &lifecycle.Service{Store: store, RegistryHost: "reg.example", Now: time.Now,
		NewID: func(p string) string { n++; return fmt.Sprintf("%s_%04d", p, n) }}
	ctx := context.Background()
	for i := range 3 {
		version := "1.0.0"
		if i == 1 {
			version = "2.0.0" // another tag of the same repository
		}
		if _, err := svc.CreateIntent(ctx, caller(fmt.Sprint("intent-", i)), &lifecycle.IntentInput{
			AppSlug: strp("app"), AppVersion: strp(version), Kind: strp("container_image"), SourceType: strp("platform_push"),
		}); err != nil {
			t.Fatal(err)
		}
	}
	intents, err := store.IntentsFor(ctx, "gpuaas/org-a/proj-a/app", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range intents {
		got = append(got, it.IntentID+" "+it.Tag+" "+string(it.Status))
	}
	if diff := cmp.Diff([]string{"pi_0005 1.0.0 open", "pi_0001 1.0.0 open"}, got); diff != "" {
		t.Fatalf("intents (-want +got):\n%s", diff)
	}
	q := rec.queries[len(rec.queries)-1]
	if q.IndexName != nil || !aws.ToBool(q.ConsistentRead) || aws.ToBool(q.ScanIndexForward) {
		t.Fatalf("IntentsFor queried index %v consistent=%v forward=%v; want the table, consistently, newest first",
			aws.ToString(q.IndexName), aws.ToBool(q.ConsistentRead), aws.ToBool(q.ScanIndexForward))
	}
}
