package artifact

import "slices"

// Permission is a capability on a project's artifacts.
type Permission string

// Permissions of the contract (SPEC section 4).
const (
	PermRead             Permission = "read"
	PermPublish          Permission = "publish"
	PermPromote          Permission = "promote"
	PermPromoteProtected Permission = "promote_protected"
	PermDeprecate        Permission = "deprecate"
	PermRetire           Permission = "retire"
	PermTrust            Permission = "trust"
	PermAudit            Permission = "audit"
)

// Role is a project role or a platform role.
type Role string

// Project roles and platform roles.
const (
	RoleViewer     Role = "viewer"
	RoleDeveloper  Role = "developer"
	RoleAdmin      Role = "admin"
	RoleOperator   Role = "operator"
	RoleTrustAdmin Role = "trust_admin"
)

// ProjectRoles and PlatformRoles are the roles tokens may carry.
var (
	ProjectRoles  = []Role{RoleViewer, RoleDeveloper, RoleAdmin}
	PlatformRoles = []Role{RoleOperator, RoleTrustAdmin}
)

var grants = map[Role][]Permission{
	RoleViewer:     {PermRead},
	RoleDeveloper:  {PermRead, PermPublish, PermPromote, PermDeprecate},
	RoleAdmin:      {PermRead, PermPublish, PermPromote, PermPromoteProtected, PermDeprecate, PermRetire, PermAudit},
	RoleOperator:   {PermRead, PermAudit},
	RoleTrustAdmin: {PermRead, PermTrust, PermAudit},
}

// Grants reports whether role holds perm.
func Grants(role Role, perm Permission) bool { return slices.Contains(grants[role], perm) }

// RolesGranting lists the roles that hold perm, for error details.
func RolesGranting(perm Permission) []string {
	out := []string{}
	for _, r := range append(slices.Clone(ProjectRoles), PlatformRoles...) {
		if Grants(r, perm) {
			out = append(out, string(r))
		}
	}
	return out
}
