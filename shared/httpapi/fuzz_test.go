package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
)

// specStatus is SPEC section 4's error table: the statuses each code may have.
var specStatus = map[string][]int{
	"invalid_request":             {400, 413, 422},
	"insufficient_permissions":    {403},
	"app_artifact_not_found":      {404},
	"app_artifact_already_exists": {409},
	"app_artifact_state_invalid":  {409},
	"service_unavailable":         {503},
	"upstream_error":              {502},
	"internal_error":              {500},
}

// checkEnvelope fails t unless r is a success or the SPEC's error envelope,
// and never a 5xx (nothing here makes DynamoDB or the registry fail).
func checkEnvelope(t testing.TB, what string, r resp) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("%s: %d %s", what, r.status, r.body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.body), &raw); err != nil {
		t.Fatalf("%s: %d body is not a JSON object: %q", what, r.status, r.body)
	}
	if r.status < 400 {
		if _, ok := raw["error"]; ok {
			t.Fatalf("%s: %d success with an error member: %s", what, r.status, r.body)
		}
		return
	}
	if r.headers["Idempotent-Replayed"] != "" {
		t.Fatalf("%s: %d error marked as a replay", what, r.status)
	}
	var env struct {
		Error *struct {
			Code          *string         `json:"code"`
			Message       *string         `json:"message"`
			CorrelationID *string         `json:"correlation_id"`
			Details       *map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil || len(raw) != 1 || env.Error == nil ||
		env.Error.Code == nil || env.Error.Message == nil || *env.Error.Message == "" ||
		env.Error.CorrelationID == nil || env.Error.Details == nil || *env.Error.Details == nil {
		t.Fatalf("%s: %d is not the error envelope: %s", what, r.status, r.body)
	}
	if !slices.Contains(specStatus[*env.Error.Code], r.status) {
		t.Fatalf("%s: code %q with status %d", what, *env.Error.Code, r.status)
	}
	if *env.Error.CorrelationID != r.headers["X-Correlation-ID"] || *env.Error.CorrelationID == "" {
		t.Fatalf("%s: correlation_id %q, header %q", what, *env.Error.CorrelationID, r.headers["X-Correlation-ID"])
	}
}

// Fuzzed requests choose among these so that every input reaches a route the
// contract can route (the fuzzed parts are the body, one header, the query,
// the artifact id and the caller).
var (
	fuzzProjects = []string{projectA, projectB, "Bad_Project", "p"}
	fuzzCallers  = []who{
		dev(projectA), admin(projectA), viewer(projectA), platform("trust_admin"), platform("operator"),
		foreign(projectA, "admin"), dev(projectB),
		{sub: "", org: orgA, projectRoles: projectA + ":admin"},
		{sub: "s", org: "Not/An/Org", projectRoles: projectA + ":admin"},
		{sub: "s", org: orgA, projectRoles: projectA + ":admin", principalType: "robot"},
	}
	fuzzHeaders = []string{"", "x-project-id", "x-idempotency-key", "X-Idempotency-Key", "content-type", "x-amzn-trace-id", "traceparent", "X-PROJECT-ID"}
)

// routable reports whether id can sit in a path segment the contract's
// router will route as {artifact_id}.
func routable(id string) bool {
	if id == "" || id == "." || id == ".." || id == "publish-intents" || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("/?#%\\", r) {
			return false
		}
	}
	return true
}

func parseQuery(q string) map[string]string {
	if q == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// FuzzRequest feeds arbitrary bodies, headers, queries, artifact ids and
// callers to the real handler of every route (through the harness, so every
// response is also checked against the OpenAPI document): the answer is a
// success or the error envelope with the status the SPEC gives its code,
// never a 5xx, and a refused mutation writes nothing.
func FuzzRequest(f *testing.F) {
	e := newEnv(f)
	id := e.register(projectA)
	routeIndex := map[string]uint8{}
	for i, rt := range httpapi.Routes {
		routeIndex[rt.Name] = uint8(i)
	}
	reg := registerBody(projectA, "fuzz-app", "1.2.3", digest(777))
	seeds := []struct {
		route            string
		caller           uint8
		body             string
		mode             uint8
		artifact         string
		header           uint8
		value, query     string
		project          uint8
		unused1, unused2 bool
	}{
		{route: "list-artifacts", query: "limit=2&lifecycle_state=published"},
		{route: "list-artifacts", query: "limit=101"},
		{route: "list-artifacts", query: "cursor=eyJ2IjoxfQ.AAAA"},
		{route: "list-artifacts", caller: 5},
		{route: "get-artifact"},
		{route: "get-artifact", artifact: "art_nope"},
		{route: "get-artifact", artifact: "not~an~id"},
		{route: "register-artifact", body: reg},
		{route: "register-artifact", body: reg, header: 2, value: "fuzz-key-00000001"},
		{route: "register-artifact", body: strings.Replace(reg, "1.2.3", "1.2.4", 1), header: 2, value: "fuzz-key-00000001"},
		{route: "register-artifact", body: reg, mode: 1},
		{route: "register-artifact", body: reg, mode: 2},
		{route: "register-artifact", body: `{"app_slug":"a","app_slug":"b"}`},
		{route: "register-artifact", body: `{"App_Slug":"x"}`},
		{route: "register-artifact", body: `[` + reg + `]`},
		{route: "register-artifact", body: `{"app_slug":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`},
		{route: "register-artifact", body: reg, header: 1, value: projectB},
		{route: "create-publish-intent", body: `{"app_slug":"fuzz-app","app_version":"1.0","artifact_kind":"helm_chart","source_type":"platform_push"}`},
		{route: "get-publish-intent", artifact: "pi_nope"},
		{route: "promote-artifact", body: `{"channel":"dev"}`},
		{route: "promote-artifact", body: `{"channel":"production"}`, caller: 1},
		{route: "promote-artifact", body: `{"channel":"dev"}`, header: 2, value: "short"},
		{route: "promote-artifact", body: `{"channel":null}`},
		{route: "deprecate-artifact", mode: 3},
		{route: "deprecate-artifact", body: `{"reason":"\u0000"}`},
		{route: "retire-artifact", body: `{"reason":"done"}`, caller: 1},
		{route: "revoke-artifact", body: `{"reason":"leak"}`, caller: 3},
		{route: "revoke-artifact", body: `{"reason":"leak"}`, caller: 7},
		{route: "verify-artifact", mode: 3, caller: 3},
		{route: "get-artifact-policy", caller: 1},
		{route: "put-artifact-policy", body: defaultPolicyBody, caller: 3},
		{route: "put-artifact-policy", body: `{"channels":[{"name":"dev","name":"x"}]}`, caller: 3},
		{route: "get-artifact", caller: 8, project: 2},
		{route: "get-artifact", caller: 9, header: 5, value: "Root=1-5759e988-bd862e3fe1be46a994272793"},
	}
	for _, s := range seeds {
		r, ok := routeIndex[s.route]
		if !ok {
			continue
		}
		f.Add(r, s.caller, s.body, s.mode, s.artifact, s.header, s.value, s.query, s.project)
	}
	f.Fuzz(func(t *testing.T, route, caller uint8, body string, mode uint8, artifactID string, header uint8, value, query string, project uint8) {
		fe := &env{t: t, table: e.table, ddb: e.ddb, handlers: e.handlers, logs: e.logs}
		rt := httpapi.Routes[int(route)%len(httpapi.Routes)]
		if !routable(artifactID) {
			artifactID = id
		}
		r := req{route: rt.Name, as: fuzzCallers[int(caller)%len(fuzzCallers)], project: fuzzProjects[int(project)%len(fuzzProjects)],
			artifact: artifactID, body: body, query: parseQuery(query)}
		switch mode % 4 {
		case 1:
			r.body, r.b64 = base64.StdEncoding.EncodeToString([]byte(body)), true
		case 2:
			r.b64 = true
		case 3:
			r.noBody = true
		}
		if h := fuzzHeaders[int(header)%len(fuzzHeaders)]; h != "" {
			r.headers = map[string]string{h: value}
		}
		var before string
		if rt.Mutation() {
			before = fe.dump()
		}
		got := fe.do(r)
		what := fmt.Sprintf("%s as %s (mode %d, header %q=%q, query %q, artifact %q)\nbody %q", rt.Name, r.as.sub, mode%4, fuzzHeaders[int(header)%len(fuzzHeaders)], value, query, artifactID, body)
		checkEnvelope(t, what, got)
		if rt.Mutation() && got.status >= 400 {
			if after := fe.dump(); after != before {
				t.Fatalf("%s: refused with %d %s, yet the table changed", what, got.status, got.body)
			}
		}
	})
}

// FuzzParseIdentity: any claims parse or are refused 403 invalid_identity,
// never panic; an identity holds only permissions the SPEC's table gives
// the known roles its claims name, project roles only for their project.
// One more claim of any name and value makes the map arbitrary (it may
// replace one of the others).
func FuzzParseIdentity(f *testing.F) {
	for _, s := range [][8]string{
		{"u", "org-acme", "user", "p1:admin", "", "p1", "", ""},
		{"u", "org-acme", "", "[p2:admin p1:developer]", "trust_admin", "p1", "scope", "openid"},
		{"u", "org-acme", "service_account", "p1:trust_admin", "admin", "p1", "", ""},
		{"u", "org-acme", "robot", "p1:admin", "", "p1", "", ""},
		{"", "org-acme", "user", "p1:admin", "", "p1", "", ""},
		{strings.Repeat("u", 257), "org-acme", "user", "p1:admin", "", "p1", "", ""},
		{"u", "Org/X", "user", "p1:admin", "", "p1", "", ""},
		{"u", "o", "user", "p1:admin,p1:viewer , :admin p1: :", "operator,,trust_admin", "p1", "", ""},
		{"u", "o", "user", "p1:admin:extra p1:Admin P1:admin", "TRUST_ADMIN", "p1", "", ""},
		{"u", "o", "user", "p1:admin\tp2:viewer", "operator\ttrust_admin", "p2", "", ""},
		{"u", "o", "user", "[[p1:admin]]", "[operator]", "p1", "", ""},
		{"u", "o", "user", "p1:admin", "", "", "", ""},
		{"u", "o", "user", "", "", "p1", "project_roles", "p1:admin"},
		{"u", "o", "user", "p1:viewer", "", "p1", "platform_roles", "trust_admin"},
		{"u", "o", "user", "p1:viewer", "", "p1", "sub", ""},
		{"u", "o", "user", "p1:viewer", "", "p1", "org_id", "other-org"},
		{"u", "o", "user", "p1:viewer", "", "p1", "Project_Roles", "p1:admin"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], true)
	}
	f.Add("u", "o", "user", "p1:admin", "", "p1", "", "", false)
	f.Fuzz(func(t *testing.T, sub, org, ptype, projectRoles, platformRoles, project, extraName, extraValue string, authorizer bool) {
		ev := &events.APIGatewayV2HTTPRequest{}
		claims := map[string]string{"sub": sub, "org_id": org, "principal_type": ptype, "project_roles": projectRoles, "platform_roles": platformRoles}
		if extraName != "" {
			claims[extraName] = extraValue
		}
		if authorizer {
			ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: claims}}
		}
		sub, org, ptype = claims["sub"], claims["org_id"], claims["principal_type"]
		projectRoles, platformRoles = claims["project_roles"], claims["platform_roles"]
		id, err := httpapi.ParseIdentity(ev)
		usable := authorizer && sub != "" && len(sub) <= 256 && artifact.ValidID(org) && (ptype == "" || ptype == "user" || ptype == "service_account")
		if err != nil {
			e, ok := err.(*artifact.Error)
			if !ok || e.Code != artifact.CodeInsufficientPermissions || e.Reason() != "invalid_identity" {
				t.Fatalf("ParseIdentity refused with %#v, want 403 invalid_identity", err)
			}
			if usable {
				t.Fatalf("usable claims refused: %q: %v", claims, err)
			}
			return
		}
		if !usable {
			t.Fatalf("unusable claims accepted: authorizer %v, %q", authorizer, claims)
		}
		wantType := artifact.PrincipalType(ptype)
		if ptype == "" {
			wantType = artifact.PrincipalUser
		}
		if diff := cmp.Diff([]string{sub, string(wantType), org}, []string{id.Principal.PrincipalID, string(id.Principal.PrincipalType), id.OrgID}); diff != "" {
			t.Fatalf("identity (-want +got):\n%s", diff)
		}
		// The most the claims can grant on project: the SPEC's permissions
		// of every known role a token of the claims names, read loosely.
		split := func(s string) []string {
			return strings.FieldsFunc(s, func(r rune) bool {
				return r == ' ' || r == ',' || r == '[' || r == ']' || r == '\t' || r == '\n' || r == '\r'
			})
		}
		most := map[string]bool{}
		for _, tok := range split(projectRoles) {
			p, role, ok := strings.Cut(tok, ":")
			if ok && p == project && p != "" && (role == "viewer" || role == "developer" || role == "admin") {
				for _, perm := range specGrants[role] {
					most[perm] = true
				}
			}
		}
		for _, role := range split(platformRoles) {
			if role == "operator" || role == "trust_admin" {
				for _, perm := range specGrants[role] {
					most[perm] = true
				}
			}
		}
		for perm, ok := range id.Perms(project) {
			if ok && !most[specPerm(perm)] {
				t.Fatalf("project_roles %q platform_roles %q grant %s on %q", projectRoles, platformRoles, perm, project)
			}
		}
	})
}

// specPerm names a permission as specGrants does.
func specPerm(p artifact.Permission) string { return string(p) }

// TestInputLimits: SPEC section 4's limits on what a request may carry. Each
// refusal is the contract's code and reason and writes nothing; a body of
// exactly 64 KiB is still accepted.
func TestInputLimits(t *testing.T) {
	e := newEnv(t)
	id := e.register(projectA)
	n := 0
	body := func(size int) string {
		n++
		b := registerBody(projectA, "limits-app", fmt.Sprintf("9.9.%d", n), digest(990000+n))
		return b[:len(b)-1] + strings.Repeat(" ", size-len(b)) + "}"
	}
	reg := func(b string) req { return req{route: "register-artifact", as: dev(projectA), body: b} }
	reg64 := func(b string) req {
		return req{route: "register-artifact", as: dev(projectA), body: base64.StdEncoding.EncodeToString([]byte(b)), b64: true}
	}
	promote := func(b string) req { return req{route: "promote-artifact", as: dev(projectA), artifact: id, body: b} }
	deep := func(open, close string, depth int) string {
		return strings.Repeat(open, depth) + strings.Repeat(close, depth)
	}
	nestedObj := func(depth int) string { return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) }
	list := func(limit string) req {
		return req{route: "list-artifacts", as: viewer(projectA), query: map[string]string{"limit": limit}}
	}
	putPolicy := func(b string) req { return req{route: "put-artifact-policy", as: platform("trust_admin"), body: b} }

	for _, c := range []struct {
		name   string
		r      req
		status int
		reason string // "" for a success
	}{
		{"body of exactly 64 KiB", reg(body(httpapi.MaxBody)), 201, ""},
		{"base64 body decoding to exactly 64 KiB", reg64(body(httpapi.MaxBody)), 201, ""},
		{"body of 64 KiB + 1 byte", reg(body(httpapi.MaxBody + 1)), 413, "body_too_large"},
		{"base64 body decoding to 64 KiB + 1 byte", reg64(body(httpapi.MaxBody + 1)), 413, "body_too_large"},
		{"body of 1 MiB", reg(body(1 << 20)), 413, "body_too_large"},
		{"deep arrays in a string field", reg(`{"app_slug":` + deep("[", "]", 30000) + `}`), 400, "invalid_field"},
		{"deep objects in a string field", reg(`{"app_slug":` + nestedObj(10000) + `}`), 400, "invalid_field"},
		{"deep arrays in an unknown field", reg(`{"x":` + deep("[", "]", 30000) + `}`), 400, "unknown_field"},
		{"deep arrays at the top", reg(deep("[", "]", 30000)), 400, "malformed_json"},
		{"deep objects at the top", reg(nestedObj(10000)), 400, "unknown_field"},
		{"deep arrays in a policy channel", putPolicy(`{"channels":[` + deep("[", "]", 30000) + `]}`), 400, "invalid_field"},
		{"deep objects in a policy channel name", putPolicy(`{"channels":[{"name":` + nestedObj(10000) + `}]}`), 400, "invalid_field"},
		{"unterminated deep nesting", reg(`{"app_slug":` + strings.Repeat("[", 60000)), 400, "invalid_field"},
		{"limit 0", list("0"), 400, "invalid_query_parameter"},
		{"limit 100", list("100"), 200, ""},
		{"limit above the maximum", list("101"), 400, "invalid_query_parameter"},
		{"limit far above the maximum", list("99999999999999999999999"), 400, "invalid_query_parameter"},
		{"limit negative", list("-1"), 400, "invalid_query_parameter"},
		{"limit not an integer", list("1e2"), 400, "invalid_query_parameter"},
		{"limit with a sign", list("+5"), 200, ""},
		{"limit with spaces", list(" 5"), 400, "invalid_query_parameter"},
		{"duplicate key", reg(strings.Replace(body(600), `{`, `{"app_slug":"other-app",`, 1)), 400, "duplicate_field"},
		{"duplicate key, same value", promote(`{"channel":"dev","channel":"dev"}`), 400, "duplicate_field"},
		{"duplicate key spelled with an escape", promote(`{"channel":"dev","ch\u0061nnel":"production"}`), 400, "duplicate_field"},
		{"duplicate key in a nested object", putPolicy(strings.Replace(defaultPolicyBody, `{"name":"dev",`, `{"name":"dev","name":"prod",`, 1)), 400, "duplicate_field"},
		{"duplicate key, null first", promote(`{"channel":null,"channel":"dev"}`), 400, "duplicate_field"},
		{"case-variant field name", promote(`{"Channel":"dev"}`), 400, "unknown_field"},
		{"upper-case field name", promote(`{"CHANNEL":"dev"}`), 400, "unknown_field"},
		{"case variant beside the real name", promote(`{"channel":"dev","CHANNEL":"production"}`), 400, "unknown_field"},
		{"Unicode case fold (long s) of a field name", req{route: "revoke-artifact", as: platform("trust_admin"), artifact: id, body: `{"reaſon":"x"}`}, 400, "unknown_field"},
		{"Kelvin sign case fold of a field name", reg(strings.Replace(body(600), `"artifact_kind"`, `"artifact_\u212aind"`, 1)), 400, "unknown_field"},
		{"case-variant nested field name", putPolicy(strings.Replace(defaultPolicyBody, `"required_trust"`, `"Required_Trust"`, 1)), 400, "unknown_field"},
	} {
		t.Run(c.name, func(t *testing.T) {
			et := &env{t: t, table: e.table, ddb: e.ddb, handlers: e.handlers, logs: e.logs}
			before := et.dump()
			r := et.do(c.r)
			checkEnvelope(t, c.name, r)
			want := []any{c.status, c.reason}
			if diff := cmp.Diff(want, []any{r.status, r.reason()}); diff != "" {
				t.Fatalf("(-want +got):\n%s\n%.300s", diff, r.body)
			}
			if c.reason != "" && r.errCode() != "invalid_request" {
				t.Fatalf("code %q, want invalid_request", r.errCode())
			}
			if after := et.dump(); (after != before) != (c.status == 201) {
				t.Fatalf("status %d, table changed: %v", r.status, after != before)
			}
		})
	}
}
