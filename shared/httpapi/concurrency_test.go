package httpapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/google/go-cmp/cmp"
)

const storm = 32

func parallel(n int, f func(i int) resp) []resp {
	out := make([]resp, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

func TestSameKeyStorm(t *testing.T) {
	routes := []struct {
		name  string
		route string
		body  string
		as    who
	}{
		{"promote", "promote-artifact", `{"channel":"dev"}`, dev(projectA)},
		{"deprecate", "deprecate-artifact", `{"reason":"storm"}`, dev(projectA)},
		{"register", "register-artifact", registerBody(projectA, "storm-app", "9.9.9", digest(424242)), dev(projectA)},
		{"publish intent", "create-publish-intent", `{"app_slug":"storm-app","app_version":"1","artifact_kind":"oci_artifact","source_type":"platform_push"}`, dev(projectA)},
	}
	for _, rc := range routes {
		t.Run(rc.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.register(projectA)
			auditsBefore := len(e.audits())
			res := parallel(storm, func(int) resp {
				return e.do(req{route: rc.route, as: rc.as, artifact: id, body: rc.body, idemKey: "storm-key-0001"})
			})
			first, replays, fivexx := 0, 0, 0
			var original string
			for _, r := range res {
				switch {
				case r.status >= 500:
					fivexx++
				case r.status < 300 && r.headers["Idempotent-Replayed"] == "true":
					replays++
				case r.status < 300:
					first++
					original = r.body
				default:
					t.Errorf("unexpected %d %s", r.status, r.body)
				}
			}
			for _, r := range res {
				if r.body != original {
					t.Errorf("response differs from the first:\n%s\n%s", r.body, original)
				}
			}
			got := []int{first, replays, fivexx, len(e.audits()) - auditsBefore}
			if diff := cmp.Diff([]int{1, storm - 1, 0, 1}, got); diff != "" {
				t.Fatalf("[transitions replays 5xx audit rows] (-want +got):\n%s", diff)
			}
			t.Logf("%s storm: %d transition, %d byte-identical replays, %d 5xx, %d audit row", rc.name, got[0], got[1], got[2], got[3])
		})
	}
}

type snap struct {
	Lifecycle string   `dynamodbav:"lifecycle_state" json:"lifecycle_state"`
	Trust     string   `dynamodbav:"trust_state" json:"trust_state"`
	Channels  []string `dynamodbav:"channels" json:"channels"`
}

func norm(s snap) snap {
	if s.Channels == nil {
		s.Channels = []string{}
	}
	return s
}

func TestConcurrentDistinctKeysSerialize(t *testing.T) {
	// 31 promotes, each into a channel of its own, and one deprecate, all
	// with distinct keys on one artifact: every success is a change (no
	// promote can be a no-op), so successes, audit rows and revision must
	// agree exactly.
	var chans []string
	var policy strings.Builder
	policy.WriteString(`{"channels":[`)
	for i := range storm - 1 {
		chans = append(chans, fmt.Sprintf("ch-%02d", i))
		if i > 0 {
			policy.WriteString(",")
		}
		fmt.Fprintf(&policy, `{"name":%q,"protected":false,"required_trust":["unverified","verified"],"signature_required":false}`, chans[i])
	}
	policy.WriteString(`],"signature_required":false,"trusted_keys":[],"allowed_source_types":["platform_push"],"pull_through_prefixes":[]}`)
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t)
			id := e.register(projectA)
			if r := e.do(req{route: "put-artifact-policy", as: platform("trust_admin"), body: policy.String()}); r.status != 200 {
				t.Fatalf("policy: %d %s", r.status, r.body)
			}
			deprecateAt := []int{5, 16, 28}[round]
			// The i-th request's channel: one each for the 31 promotes.
			channelOf := func(i int) string {
				if i > deprecateAt {
					i--
				}
				return chans[i]
			}
			res := parallel(storm, func(i int) resp {
				if i == deprecateAt {
					return e.do(req{route: "deprecate-artifact", as: admin(projectA), artifact: id, body: `{"reason":"race"}`})
				}
				return e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: fmt.Sprintf(`{"channel":%q}`, channelOf(i))})
			})
			successes, deprecated := 0, false
			var promotedInto []string
			for i, r := range res {
				switch {
				case r.status == 200:
					successes++
					if i == deprecateAt {
						deprecated = true
					} else {
						promotedInto = append(promotedInto, channelOf(i))
					}
				case r.status == 409 && r.errCode() == "app_artifact_state_invalid":
				default:
					t.Errorf("loser answered %d %s", r.status, r.body)
				}
			}
			// Chain the audit rows: each one's before is the previous one's
			// after, from the registered state to the stored one. That is a
			// serial order that explains the final state.
			type row struct{ Before, After snap }
			var rows []row
			for _, a := range e.audits() {
				if action := auditString(a, "action"); action == "app_artifact.register" || action == "app_artifact.policy_update" {
					continue
				}
				var r row
				if err := attributevalue.Unmarshal(a["before"], &r.Before); err != nil {
					t.Fatal(err)
				}
				if err := attributevalue.Unmarshal(a["after"], &r.After); err != nil {
					t.Fatal(err)
				}
				rows = append(rows, row{norm(r.Before), norm(r.After)})
			}
			cur := snap{Lifecycle: "published", Trust: "unverified", Channels: []string{}}
			used := make([]bool, len(rows))
			for step := range rows {
				found := false
				for i, r := range rows {
					if !used[i] && cmp.Equal(r.Before, cur) {
						used[i], cur, found = true, r.After, true
						break
					}
				}
				if !found {
					t.Fatalf("audit rows do not chain at step %d from %+v: %+v", step, cur, rows)
				}
			}
			final := e.do(req{route: "get-artifact", as: admin(projectA), artifact: id})
			var stored snap
			_ = json.Unmarshal([]byte(final.body), &stored)
			if diff := cmp.Diff(cur, norm(stored)); diff != "" {
				t.Fatalf("stored state is not the end of the serial order (-chain +stored):\n%s", diff)
			}
			// The serial order's effect is exactly the successes: every
			// successful promote's channel is held, no refused one is.
			slices.Sort(promotedInto)
			held := slices.Sorted(slices.Values(norm(stored).Channels))
			if diff := cmp.Diff(promotedInto, held); diff != "" {
				t.Fatalf("channels held vs successful promotes (-promoted +stored):\n%s", diff)
			}
			if want := map[bool]string{true: "deprecated", false: "promoted"}[deprecated]; stored.Lifecycle != want && len(promotedInto) > 0 {
				t.Fatalf("lifecycle %s, deprecate succeeded=%v", stored.Lifecycle, deprecated)
			}
			// revision counts changes after registration (revision 1).
			revision := int(final.json["revision"].(float64))
			if successes != len(rows) || revision-1 != successes {
				t.Fatalf("successes %d, audit rows %d, revision %d (want revision = 1 + successes = 1 + audit rows)", successes, len(rows), revision)
			}
			t.Logf("round %d: %d successes = %d audit rows = revision %d - 1; %d refused 409; final %s with %d channels",
				round, successes, len(rows), revision, storm-successes, stored.Lifecycle, len(stored.Channels))
		})
	}
}
