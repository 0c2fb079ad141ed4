package httpapi

import (
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// Identity is what the JWT authorizer vouched for.
type Identity struct {
	Principal     artifact.Principal
	OrgID         string
	ProjectRoles  map[string][]artifact.Role
	PlatformRoles []artifact.Role
}

// claimList splits a claim the authorizer flattened to a string. Array
// claims arrive as "[a b]"; space or comma separated strings are accepted.
func claimList(v string) []string {
	v = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(v), "["), "]")
	return strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
}

// ParseIdentity reads the identity from the authorizer's JWT claims.
func ParseIdentity(req *events.APIGatewayV2HTTPRequest) (*Identity, error) {
	var claims map[string]string
	if a := req.RequestContext.Authorizer; a != nil && a.JWT != nil {
		claims = a.JWT.Claims
	}
	bad := func(msg string) error { return artifact.Forbidden("invalid_identity", msg) }
	sub := claims["sub"]
	if sub == "" || len(sub) > 256 {
		return nil, bad("the token carries no usable subject")
	}
	org := claims["org_id"]
	if !artifact.ValidID(org) {
		return nil, bad("the token carries no usable org_id")
	}
	id := &Identity{OrgID: org, ProjectRoles: map[string][]artifact.Role{}}
	id.Principal.PrincipalID = sub
	switch pt := claims["principal_type"]; pt {
	case "", string(artifact.PrincipalUser):
		id.Principal.PrincipalType = artifact.PrincipalUser
	case string(artifact.PrincipalServiceAccount):
		id.Principal.PrincipalType = artifact.PrincipalServiceAccount
	default:
		return nil, bad("principal_type must be user or service_account")
	}
	for _, pr := range claimList(claims["project_roles"]) {
		project, role, ok := strings.Cut(pr, ":")
		if ok && project != "" {
			id.ProjectRoles[project] = append(id.ProjectRoles[project], artifact.Role(role))
		}
	}
	for _, r := range claimList(claims["platform_roles"]) {
		id.PlatformRoles = append(id.PlatformRoles, artifact.Role(r))
	}
	return id, nil
}

// Perms are the permissions the identity's roles grant on projectID. Project
// roles count only for their project and platform roles only for platform
// role names; both still need the caller's org to own the project, which the
// service checks against storage.
func (id *Identity) Perms(projectID string) map[artifact.Permission]bool {
	out := map[artifact.Permission]bool{}
	grant := func(r artifact.Role) {
		for _, p := range []artifact.Permission{artifact.PermRead, artifact.PermPublish, artifact.PermPromote,
			artifact.PermPromoteProtected, artifact.PermDeprecate, artifact.PermRetire, artifact.PermTrust, artifact.PermAudit} {
			if artifact.Grants(r, p) {
				out[p] = true
			}
		}
	}
	for _, r := range id.ProjectRoles[projectID] {
		for _, known := range artifact.ProjectRoles {
			if r == known {
				grant(r)
			}
		}
	}
	for _, r := range id.PlatformRoles {
		for _, known := range artifact.PlatformRoles {
			if r == known {
				grant(r)
			}
		}
	}
	return out
}
