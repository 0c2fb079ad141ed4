package httpapi_test

import (
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
)

func TestParseIdentity(t *testing.T) {
	ev := func(claims map[string]string) *events.APIGatewayV2HTTPRequest {
		r := &events.APIGatewayV2HTTPRequest{}
		if claims != nil {
			r.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: claims}}
		}
		return r
	}
	perms := func(ps ...artifact.Permission) map[artifact.Permission]bool {
		m := map[artifact.Permission]bool{}
		for _, p := range ps {
			m[p] = true
		}
		return m
	}
	for _, c := range []struct {
		name   string
		claims map[string]string
		want   map[artifact.Permission]bool // on project "p1"; nil means refused
	}{
		{"no authorizer", nil, nil},
		{"no sub", map[string]string{"org_id": "o"}, nil},
		{"no org", map[string]string{"sub": "u"}, nil},
		{"bad org", map[string]string{"sub": "u", "org_id": "Org/X"}, nil},
		{"bad principal type", map[string]string{"sub": "u", "org_id": "o", "principal_type": "robot"}, nil},
		{"no roles", map[string]string{"sub": "u", "org_id": "o"}, perms()},
		{"viewer", map[string]string{"sub": "u", "org_id": "o", "project_roles": "p1:viewer"}, perms(artifact.PermRead)},
		{"role of another project", map[string]string{"sub": "u", "org_id": "o", "project_roles": "p2:admin"}, perms()},
		{"array claim", map[string]string{"sub": "u", "org_id": "o", "project_roles": "[p2:admin p1:developer]"}, perms(artifact.PermRead, artifact.PermPublish, artifact.PermPromote, artifact.PermDeprecate)},
		{"platform role", map[string]string{"sub": "u", "org_id": "o", "platform_roles": "trust_admin"}, perms(artifact.PermRead, artifact.PermTrust, artifact.PermAudit)},
		{"platform role as project role", map[string]string{"sub": "u", "org_id": "o", "project_roles": "p1:trust_admin"}, perms()},
		{"project role as platform role", map[string]string{"sub": "u", "org_id": "o", "platform_roles": "admin"}, perms()},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := httpapi.ParseIdentity(ev(c.claims))
			if c.want == nil {
				if err == nil || artifact.ErrorCode(err) != artifact.CodeInsufficientPermissions {
					t.Fatalf("want 403, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, id.Perms("p1")); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}
