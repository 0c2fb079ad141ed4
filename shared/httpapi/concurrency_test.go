package httpapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
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
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t)
			id := e.register(projectA)
			e.setTrust(projectA, id, "verified")
			channels := []string{"dev", "staging", "production"}
			deprecateAt := []int{5, 16, 28}[round]
			res := parallel(storm, func(i int) resp {
				if i == deprecateAt {
					return e.do(req{route: "deprecate-artifact", as: admin(projectA), artifact: id, body: `{"reason":"race"}`})
				}
				return e.do(req{route: "promote-artifact", as: admin(projectA), artifact: id, body: fmt.Sprintf(`{"channel":%q}`, channels[i%3])})
			})
			successes := 0
			for _, r := range res {
				switch {
				case r.status == 200:
					successes++
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
				if auditString(a, "action") == "app_artifact.register" {
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
			cur := snap{Lifecycle: "published", Trust: "verified", Channels: []string{}}
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
			revision := int(final.json["revision"].(float64))
			changes := len(rows)
			// No-op promotes (a channel already held) are successes without a change.
			noops := successes - changes
			if revision != 1+changes || noops < 0 {
				t.Fatalf("revision %d, audit rows %d, successes %d", revision, changes, successes)
			}
			if stored.Lifecycle == "deprecated" && slices.Contains([]string{"published", "promoted"}, cur.Lifecycle) {
				t.Fatalf("inconsistent")
			}
			t.Logf("round %d: %d successes (%d changes, %d no-ops), %d refused, revision %d, final %+v",
				round, successes, changes, noops, storm-successes, revision, stored)
		})
	}
}
