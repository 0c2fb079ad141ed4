package httpapi

import (
	"context"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// BasePath prefixes every route.
const BasePath = "/api/v1/projects/{project_id}"

// call is what a route runs once the request is checked.
type call func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, artifactID string, params map[string]string, in any) (*lifecycle.Result, error)

// Route is one API route, served by one Lambda function.
type Route struct {
	Name      string // functions/<Name>
	LogicalID string // the function's logical id in template.yaml
	Method    string
	Path      string
	Perm      artifact.Permission
	// newInput returns a pointer to the route's body type; nil for routes
	// without a body. bodyOptional allows an empty body.
	newInput     func() any
	bodyOptional bool
	// NeedsRegistry: the route's function is wired with the platform
	// registry (ECR); the others do not link its client.
	NeedsRegistry bool
	// Pages: the route answers cursor-paged lists, so its function needs
	// the cursor secret (CURSOR_SECRET); the others are not given it.
	Pages bool
	run   call
}

// Mutation reports whether the route changes state (and so needs an idempotency key).
func (r *Route) Mutation() bool { return r.Method == "POST" || r.Method == "PUT" }

// Key is the API Gateway route key, "METHOD /path".
func (r *Route) Key() string { return r.Method + " " + r.Path }

func transition(action artifact.Action) call {
	return func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, id string, _ map[string]string, in any) (*lifecycle.Result, error) {
		cmd := artifact.Command{Action: action}
		switch v := in.(type) {
		case *lifecycle.PromoteInput:
			if v.Channel == nil || *v.Channel == "" {
				return nil, artifact.Invalid("missing_field", "channel", "channel is required")
			}
			cmd.Channel = *v.Channel
		case *lifecycle.ReasonInput:
			if v.Reason != nil {
				cmd.Reason = *v.Reason
			}
			if err := artifact.CheckReason(cmd.Reason, action == artifact.ActionRevoke); err != nil {
				return nil, err
			}
		}
		return s.Transition(ctx, r, id, cmd)
	}
}

// Routes is the route table. template.yaml and the OpenAPI document declare
// the same set; a test holds the three together.
var Routes = []*Route{
	{
		Name: "list-artifacts", LogicalID: "ListArtifactsFunction", Method: "GET", Path: BasePath + "/app-artifacts",
		Perm: artifact.PermRead, Pages: true,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, p map[string]string, _ any) (*lifecycle.Result, error) {
			return s.List(ctx, r, p)
		},
	},
	{
		Name: "get-artifact", LogicalID: "GetArtifactFunction", Method: "GET", Path: BasePath + "/app-artifacts/{artifact_id}",
		Perm: artifact.PermRead,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, id string, _ map[string]string, _ any) (*lifecycle.Result, error) {
			return s.Get(ctx, r, id)
		},
	},
	{
		Name: "create-publish-intent", LogicalID: "CreatePublishIntentFunction", Method: "POST", Path: BasePath + "/app-artifacts/publish-intents",
		Perm: artifact.PermPublish, newInput: func() any { return new(lifecycle.IntentInput) }, NeedsRegistry: true,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, _ map[string]string, in any) (*lifecycle.Result, error) {
			return s.CreateIntent(ctx, r, in.(*lifecycle.IntentInput))
		},
	},
	{
		Name: "get-publish-intent", LogicalID: "GetPublishIntentFunction", Method: "GET", Path: BasePath + "/app-artifacts/publish-intents/{intent_id}",
		Perm: artifact.PermRead,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, id string, _ map[string]string, _ any) (*lifecycle.Result, error) {
			return s.GetIntent(ctx, r, id)
		},
	},
	{
		Name: "register-artifact", LogicalID: "RegisterArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts",
		Perm: artifact.PermPublish, newInput: func() any { return new(lifecycle.RegisterInput) },
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, _ map[string]string, in any) (*lifecycle.Result, error) {
			return s.Register(ctx, r, in.(*lifecycle.RegisterInput))
		},
	},
	{
		Name: "promote-artifact", LogicalID: "PromoteArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts/{artifact_id}/promote",
		Perm: artifact.PermPromote, newInput: func() any { return new(lifecycle.PromoteInput) },
		run: transition(artifact.ActionPromote),
	},
	{
		Name: "deprecate-artifact", LogicalID: "DeprecateArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts/{artifact_id}/deprecate",
		Perm: artifact.PermDeprecate, newInput: func() any { return new(lifecycle.ReasonInput) }, bodyOptional: true,
		run: transition(artifact.ActionDeprecate),
	},
	{
		Name: "retire-artifact", LogicalID: "RetireArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts/{artifact_id}/retire",
		Perm: artifact.PermRetire, newInput: func() any { return new(lifecycle.ReasonInput) }, bodyOptional: true,
		run: transition(artifact.ActionRetire),
	},
	{
		Name: "revoke-artifact", LogicalID: "RevokeArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts/{artifact_id}/revoke",
		Perm: artifact.PermTrust, newInput: func() any { return new(lifecycle.ReasonInput) },
		run: transition(artifact.ActionRevoke),
	},
	{
		Name: "verify-artifact", LogicalID: "VerifyArtifactFunction", Method: "POST", Path: BasePath + "/app-artifacts/{artifact_id}/verify",
		Perm: artifact.PermTrust, newInput: func() any { return new(lifecycle.ReasonInput) }, bodyOptional: true,
		run: transition(artifact.ActionRequestVerify),
	},
	{
		Name: "list-artifact-audit-events", LogicalID: "ListArtifactAuditEventsFunction", Method: "GET", Path: BasePath + "/app-artifacts/{artifact_id}/audit-events",
		Perm: artifact.PermAudit, Pages: true,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, id string, p map[string]string, _ any) (*lifecycle.Result, error) {
			return s.ListAudit(ctx, r, id, p)
		},
	},
	{
		Name: "list-audit-events", LogicalID: "ListAuditEventsFunction", Method: "GET", Path: BasePath + "/audit-events",
		Perm: artifact.PermAudit, Pages: true,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, p map[string]string, _ any) (*lifecycle.Result, error) {
			return s.ListAudit(ctx, r, "", p)
		},
	},
	{
		Name: "get-artifact-policy", LogicalID: "GetArtifactPolicyFunction", Method: "GET", Path: BasePath + "/app-artifact-policy",
		Perm: artifact.PermAudit,
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, _ map[string]string, _ any) (*lifecycle.Result, error) {
			return s.GetPolicy(ctx, r)
		},
	},
	{
		Name: "put-artifact-policy", LogicalID: "PutArtifactPolicyFunction", Method: "PUT", Path: BasePath + "/app-artifact-policy",
		Perm: artifact.PermTrust, newInput: func() any { return new(lifecycle.PolicyInput) },
		run: func(ctx context.Context, s *lifecycle.Service, r *lifecycle.Request, _ string, _ map[string]string, in any) (*lifecycle.Result, error) {
			return s.PutPolicy(ctx, r, in.(*lifecycle.PolicyInput))
		},
	},
}

// RouteByName finds a route by its function name.
func RouteByName(name string) (*Route, bool) {
	for _, r := range Routes {
		if r.Name == name {
			return r, true
		}
	}
	return nil, false
}

// RouteByLogicalID finds a route by its function's logical id in template.yaml.
func RouteByLogicalID(id string) (*Route, bool) {
	for _, r := range Routes {
		if r.LogicalID == id {
			return r, true
		}
	}
	return nil, false
}
