package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
)

type caller struct {
	name  string
	who   who
	roles []artifact.Role // roles that count on projectA
}

var callers = []caller{
	{"viewer", viewer(projectA), []artifact.Role{artifact.RoleViewer}},
	{"developer", dev(projectA), []artifact.Role{artifact.RoleDeveloper}},
	{"admin", admin(projectA), []artifact.Role{artifact.RoleAdmin}},
	{"admin of another project", admin(projectB), nil},
	{"no role", who{sub: "nobody", org: orgA}, nil},
	{"operator", platform("operator"), []artifact.Role{artifact.RoleOperator}},
	{"trust_admin", platform("trust_admin"), []artifact.Role{artifact.RoleTrustAdmin}},
	{"operator of another org", who{sub: "op-b", org: orgB, platformRoles: "operator"}, []artifact.Role{artifact.RoleOperator}},
	{"trust_admin of another org", who{sub: "ta-b", org: orgB, platformRoles: "trust_admin"}, []artifact.Role{artifact.RoleTrustAdmin}},
	{"another org claiming admin here", foreign(projectA, "admin"), []artifact.Role{artifact.RoleAdmin}},
}

func (c caller) can(p artifact.Permission) bool {
	for _, r := range c.roles {
		if artifact.Grants(r, p) {
			return true
		}
	}
	return false
}

func TestCrossProjectMatrix(t *testing.T) {
	e := newEnv(t)
	foreignArtifact := e.register(projectB) // same org, another project
	foreignIntent := e.intent(projectB)
	e.register(projectA) // projectA belongs to orgA from its first write
	success := map[string]int{"list-artifacts": 200, "get-artifact": 200, "create-publish-intent": 201,
		"register-artifact": 201, "promote-artifact": 200, "deprecate-artifact": 200, "retire-artifact": 200,
		"revoke-artifact": 200, "verify-artifact": 202, "get-artifact-policy": 200, "put-artifact-policy": 200,
		"get-publish-intent": 200, "list-artifact-audit-events": 200, "list-audit-events": 200}
	n := 0
	var notFoundBodies = map[string]string{}
	for _, rt := range httpapi.Routes {
		targets := []string{"own", "another project's", "missing"}
		if !strings.Contains(rt.Path, "{artifact_id}") && !strings.Contains(rt.Path, "{intent_id}") {
			targets = []string{"none"}
		}
		for _, c := range callers {
			for _, target := range targets {
				n++
				t.Run(fmt.Sprintf("%s/%s/%s", rt.Name, c.name, target), func(t *testing.T) {
					id := ""
					switch target {
					case "own":
						id = e.register(projectA)
						if rt.Name == "get-publish-intent" {
							id = e.intent(projectA)
						}
						if rt.Name == "verify-artifact" {
							e.setTrust(projectA, id, "failed_verification")
						}
						if rt.Name == "retire-artifact" {
							if r := e.do(req{route: "deprecate-artifact", as: admin(projectA), artifact: id, noBody: true}); r.status != 200 {
								t.Fatalf("setup deprecate: %d %s", r.status, r.body)
							}
						}
					case "another project's":
						id = foreignArtifact
						if rt.Name == "get-publish-intent" {
							id = foreignIntent
						}
					case "missing":
						id = "art_01JZZZZZZZZZZZZZZZZZZZZZZZ"
					}
					body := map[string]string{
						"create-publish-intent": `{"app_slug":"matrix-app","app_version":"` + fmt.Sprint(n) + `","artifact_kind":"container_image","source_type":"platform_push"}`,
						"promote-artifact":      `{"channel":"dev"}`,
						"revoke-artifact":       `{"reason":"matrix"}`,
						"put-artifact-policy":   defaultPolicyBody,
					}[rt.Name]
					if rt.Name == "register-artifact" {
						// A caller names its own org's namespace, as a client of that org would.
						body = strings.ReplaceAll(registerBody(projectA, "matrix-app", fmt.Sprintf("m%d", n), digest(500000+n)), "/"+orgA+"/", "/"+c.who.org+"/")
					}
					before := e.dump()
					r := e.do(req{route: rt.Name, as: c.who, artifact: id, body: body, noBody: body == ""})
					want := success[rt.Name]
					switch {
					case !c.can(rt.Perm), c.who.org != orgA:
						want = 403
					case target == "another project's" || target == "missing":
						want = 404
					}
					if r.status != want {
						t.Fatalf("got %d %s, want %d", r.status, r.body, want)
					}
					if r.status >= 400 {
						if after := e.dump(); after != before {
							t.Fatalf("a refused request changed the table")
						}
					}
					if want == 404 {
						var env map[string]map[string]any
						_ = json.Unmarshal([]byte(r.body), &env)
						delete(env["error"], "correlation_id")
						b, _ := json.Marshal(env)
						notFoundBodies[rt.Name+"/"+c.name+"/"+target] = string(b)
						if other, ok := notFoundBodies[rt.Name+"/"+c.name+"/missing"]; ok && target == "missing" {
							if prev := notFoundBodies[rt.Name+"/"+c.name+"/another project's"]; prev != other {
								t.Fatalf("another project's artifact is distinguishable from a missing one:\n%s\n%s", prev, other)
							}
						}
					}
					if rt.Name == "list-artifacts" && r.status == 200 {
						for _, it := range r.json["items"].([]any) {
							if p := it.(map[string]any)["project_id"]; p != projectA {
								t.Fatalf("list of %s holds an item of %v", projectA, p)
							}
						}
					}
				})
			}
		}
	}
	t.Logf("%d route x caller x target cases", n)
}
