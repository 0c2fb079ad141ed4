package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/google/go-cmp/cmp"
)

func trustAdmin() who { return platform("trust_admin") }

func TestRevokeQuarantinesAndIsFinal(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	if r := e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`}); r.status != 200 {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	if r := e.do(req{route: "revoke-artifact", as: trustAdmin(), artifact: id, noBody: true}); r.status != 400 || r.reason() != "malformed_json" {
		t.Fatalf("revoke without a body: %d %s", r.status, r.body)
	}
	if r := e.do(req{route: "revoke-artifact", as: trustAdmin(), artifact: id, body: `{"reason":" "}`}); r.status != 400 || r.reason() != "missing_reason" {
		t.Fatalf("revoke without a reason: %d %s", r.status, r.body)
	}
	if r := e.do(req{route: "revoke-artifact", as: admin(projectA), artifact: id, body: `{"reason":"x"}`}); r.status != 403 {
		t.Fatalf("project admin revoking: %d %s", r.status, r.body)
	}
	r := e.do(req{route: "revoke-artifact", as: trustAdmin(), artifact: id, body: `{"reason":"leaked signing key"}`})
	if r.status != 200 || r.str("trust_state") != "revoked" || r.str("trust_reason") != "revoked" {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	for _, c := range []req{
		{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"staging"}`},
		{route: "deprecate-artifact", as: dev(projectA), artifact: id, noBody: true},
	} {
		got := e.do(c)
		if got.status != 409 || got.reason() != "trust_quarantine" {
			t.Fatalf("%s under quarantine: %d %s", c.route, got.status, got.body)
		}
		if d := got.json["error"].(map[string]any)["details"].(map[string]any); d["escalate_to"] == nil {
			t.Fatalf("quarantine does not point at the trust owner: %v", d)
		}
	}
	for _, c := range []req{
		{route: "revoke-artifact", as: trustAdmin(), artifact: id, body: `{"reason":"again"}`},
		{route: "verify-artifact", as: trustAdmin(), artifact: id, noBody: true},
	} {
		if got := e.do(c); got.status != 409 || got.reason() != "trust_transition_invalid" {
			t.Fatalf("%s on revoked: %d %s", c.route, got.status, got.body)
		}
	}
	var revokes int
	for _, a := range e.audits() {
		if auditString(a, "action") == "app_artifact.revoke" {
			revokes++
		}
	}
	if revokes != 1 {
		t.Fatalf("%d revoke audit rows", revokes)
	}
}

func TestRequestVerification(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	if r := e.do(req{route: "verify-artifact", as: trustAdmin(), artifact: id, noBody: true}); r.status != 409 {
		t.Fatalf("verify an unverified artifact: %d %s", r.status, r.body)
	}
	e.setTrust(projectA, id, "failed_verification")
	for _, c := range []req{
		{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`},
		{route: "deprecate-artifact", as: dev(projectA), artifact: id, noBody: true},
	} {
		if got := e.do(c); got.status != 409 || got.reason() != "trust_quarantine" {
			t.Fatalf("%s after failed verification: %d %s", c.route, got.status, got.body)
		}
	}
	r := e.do(req{route: "verify-artifact", as: trustAdmin(), artifact: id, body: `{"reason":"registry fixed"}`, idemKey: "reverify-0001"})
	if r.status != 202 || r.str("trust_state") != "unverified" || r.json["trust_reason"] != nil {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	again := e.do(req{route: "verify-artifact", as: trustAdmin(), artifact: id, body: `{"reason":"registry fixed"}`, idemKey: "reverify-0001"})
	if again.status != 202 || again.body != r.body || again.headers["Idempotent-Replayed"] != "true" {
		t.Fatalf("replay: %d %s", again.status, again.body)
	}
	var found bool
	for _, a := range e.audits() {
		if auditString(a, "action") == "app_artifact.verify" {
			var after snap
			_ = attributevalue.Unmarshal(a["after"], &after)
			found = after.Trust == "unverified"
		}
	}
	if !found {
		t.Fatal("no app_artifact.verify audit row with after.trust_state unverified")
	}
}

// TestRevokeRacesPromotions: whatever the interleaving, once revoked no
// promotion is recorded after the revocation.
func TestRevokeRacesPromotions(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t)
			id := e.register(projectA)
			e.setTrust(projectA, id, "verified")
			revokeAt := []int{3, 15, 30}[round]
			channels := []string{"dev", "staging", "production"}
			res := parallel(storm, func(i int) resp {
				if i == revokeAt {
					return e.do(req{route: "revoke-artifact", as: trustAdmin(), artifact: id, body: `{"reason":"race"}`})
				}
				return e.do(req{route: "promote-artifact", as: admin(projectA), artifact: id, body: fmt.Sprintf(`{"channel":%q}`, channels[i%3])})
			})
			for i, r := range res {
				if r.status >= 500 || (r.status != 200 && r.status != 409) {
					t.Fatalf("request %d: %d %s", i, r.status, r.body)
				}
				if r.status == 409 && i != revokeAt && r.reason() != "trust_quarantine" && r.reason() != "concurrent_update" {
					t.Fatalf("promote refused for %s", r.reason())
				}
			}
			if res[revokeAt].status != 200 {
				t.Fatalf("revoke: %d %s", res[revokeAt].status, res[revokeAt].body)
			}
			type row struct{ Before, After snap }
			var rows []row
			for _, a := range e.audits() {
				if auditString(a, "action") == "app_artifact.register" {
					continue
				}
				var r row
				_ = attributevalue.Unmarshal(a["before"], &r.Before)
				_ = attributevalue.Unmarshal(a["after"], &r.After)
				rows = append(rows, row{norm(r.Before), norm(r.After)})
			}
			// Walk the chain; after the revoke no row may add a channel.
			cur := snap{Lifecycle: "published", Trust: "verified", Channels: []string{}}
			revoked := false
			for range rows {
				next := -1
				for i, r := range rows {
					if cmp.Equal(r.Before, cur) {
						next = i
					}
				}
				if next < 0 {
					t.Fatalf("audit rows do not chain from %+v", cur)
				}
				if revoked && len(rows[next].After.Channels) > len(cur.Channels) {
					t.Fatalf("a promotion was recorded after the revocation: %+v -> %+v", cur, rows[next].After)
				}
				cur = rows[next].After
				revoked = revoked || cur.Trust == "revoked"
				rows = append(rows[:next], rows[next+1:]...)
			}
			if !revoked {
				t.Fatal("the chain never reached revoked")
			}
			t.Logf("round %d: final %+v", round, cur)
		})
	}
}

func policyBody(t *testing.T, edit func(p map[string]any)) string {
	t.Helper()
	var p map[string]any
	_ = json.Unmarshal([]byte(defaultPolicyBody), &p)
	edit(p)
	b, _ := json.Marshal(p)
	return string(b)
}

func publicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestPolicy(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	e.setTrust(projectA, id, "verified")

	def := e.do(req{route: "get-artifact-policy", as: admin(projectA)})
	if def.status != 200 || def.json["revision"] != float64(0) || len(def.json["channels"].([]any)) != 3 {
		t.Fatalf("default policy: %d %s", def.status, def.body)
	}
	if r := e.do(req{route: "get-artifact-policy", as: dev(projectA)}); r.status != 403 {
		t.Fatalf("developer reading the policy: %d", r.status)
	}
	if r := e.do(req{route: "put-artifact-policy", as: admin(projectA), body: defaultPolicyBody}); r.status != 403 {
		t.Fatalf("project admin writing the policy: %d", r.status)
	}

	key := publicKeyPEM(t)
	custom := policyBody(t, func(p map[string]any) {
		p["channels"] = []any{
			map[string]any{"name": "canary", "protected": false, "required_trust": []string{"verified"}, "signature_required": false},
			map[string]any{"name": "prod-eu", "protected": true, "required_trust": []string{"verified"}, "signature_required": true},
		}
		p["trusted_keys"] = []any{map[string]any{"key_id": "release-1", "pem": key}}
		p["allowed_source_types"] = []string{"pull_through_cache"}
		p["pull_through_prefixes"] = []string{"pull-through/docker-hub/"}
	})
	put := e.do(req{route: "put-artifact-policy", as: trustAdmin(), body: custom, idemKey: "policy-key-01"})
	if put.status != 200 || put.json["revision"] != float64(1) || put.json["updated_by"] == nil {
		t.Fatalf("put: %d %s", put.status, put.body)
	}
	if e.lastCalls() != 2 {
		t.Errorf("put policy: %d round trips, want 2", e.lastCalls())
	}
	if r := e.do(req{route: "put-artifact-policy", as: trustAdmin(), body: custom, idemKey: "policy-key-01"}); r.body != put.body || r.headers["Idempotent-Replayed"] != "true" {
		t.Fatalf("replay: %s", r.body)
	}
	got := e.do(req{route: "get-artifact-policy", as: platform("operator")})
	if got.body != put.body {
		t.Fatalf("get after put:\n%s\nwant\n%s", got.body, put.body)
	}

	// Promotion follows the project's channels.
	if r := e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"dev"}`}); r.status != 400 || r.reason() != "unknown_channel" {
		t.Fatalf("promote into a channel the policy dropped: %d %s", r.status, r.body)
	}
	if r := e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"canary"}`}); r.status != 200 {
		t.Fatalf("promote into canary: %d %s", r.status, r.body)
	}
	if r := e.do(req{route: "promote-artifact", as: dev(projectA), artifact: id, body: `{"channel":"prod-eu"}`}); r.status != 403 || r.reason() != "protected_channel" {
		t.Fatalf("developer into protected prod-eu: %d %s", r.status, r.body)
	}
	// Registration follows the allowed source types.
	before := e.dump()
	r := e.do(req{route: "register-artifact", as: dev(projectA), body: registerBody(projectA, "blocked-app", "1", digest(880001))})
	if r.status != 400 || r.reason() != "source_type_not_allowed" {
		t.Fatalf("platform_push under a pull-through-only policy: %d %s", r.status, r.body)
	}
	if e.dump() != before {
		t.Fatal("a refused registration changed the table")
	}
	pull := strings.Replace(strings.Replace(registerBody(projectA, "nginx", "1.27", digest(880002)), "platform_push", "pull_through_cache", 1),
		"gpuaas/"+orgA+"/"+projectA+"/nginx", "pull-through/docker-hub/library/nginx", 1)
	if r := e.do(req{route: "register-artifact", as: dev(projectA), body: pull}); r.status != 201 {
		t.Fatalf("pull-through registration: %d %s", r.status, r.body)
	}

	for name, body := range map[string]string{
		"no channels": policyBody(t, func(p map[string]any) { p["channels"] = []any{} }),
		"quarantined trust": policyBody(t, func(p map[string]any) {
			p["channels"].([]any)[0].(map[string]any)["required_trust"] = []string{"revoked"}
		}),
		"duplicate channel":       policyBody(t, func(p map[string]any) { p["channels"] = append(p["channels"].([]any), p["channels"].([]any)[0]) }),
		"signatures without keys": policyBody(t, func(p map[string]any) { p["signature_required"] = true }),
		"RSA key": policyBody(t, func(p map[string]any) {
			p["trusted_keys"] = []any{map[string]any{"key_id": "k", "pem": "-----BEGIN PUBLIC KEY-----\nMFww\n-----END PUBLIC KEY-----\n"}}
		}),
		"no source types":                           policyBody(t, func(p map[string]any) { p["allowed_source_types"] = []string{} }),
		"prefix in gpuaas/":                         policyBody(t, func(p map[string]any) { p["pull_through_prefixes"] = []string{"gpuaas/other/"} }),
		"prefix outside the pull-through namespace": policyBody(t, func(p map[string]any) { p["pull_through_prefixes"] = []string{"docker-hub/"} }),
		"missing field":                             policyBody(t, func(p map[string]any) { delete(p, "trusted_keys") }),
		"unknown nested field":                      policyBody(t, func(p map[string]any) { p["channels"].([]any)[0].(map[string]any)["color"] = "red" }),
		"revision is server-owned":                  policyBody(t, func(p map[string]any) { p["revision"] = 9 }),
	} {
		t.Run(name, func(t *testing.T) {
			before := e.dump()
			r := e.do(req{route: "put-artifact-policy", as: trustAdmin(), body: body})
			if r.status != 400 || r.errCode() != "invalid_request" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if e.dump() != before {
				t.Fatal("the table changed")
			}
		})
	}
}
