package httpapi_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// TestRunbookNamesWhatTheSourceRunbookNames holds the operator runbook to
// the source it was built from (../shared/seeds): every error class, state,
// header, audit action and piece of evidence that source names is in the
// code and in doc/operations/runbooks/App_Artifact_Lifecycle_Incident_Runbook.md,
// together with the log query an operator starts from.
func TestRunbookNamesWhatTheSourceRunbookNames(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "doc", "operations", "runbooks", "App_Artifact_Lifecycle_Incident_Runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	runbook := string(b)
	codes := []artifact.Code{artifact.CodeInvalidRequest, artifact.CodeInsufficientPermissions, artifact.CodeNotFound,
		artifact.CodeAlreadyExists, artifact.CodeStateInvalid, artifact.CodeServiceUnavailable, artifact.CodeUpstream, artifact.CodeInternal}
	var terms []string
	for _, c := range codes {
		terms = append(terms, string(c))
	}
	for _, want := range []string{"invalid_request", "insufficient_permissions", "app_artifact_not_found", "app_artifact_already_exists",
		"app_artifact_state_invalid", "service_unavailable", "upstream_error", "internal_error"} {
		if !slices.Contains(terms, want) {
			t.Errorf("error class %s has no code", want)
		}
	}
	for _, s := range artifact.LifecycleStates {
		terms = append(terms, string(s))
	}
	for _, s := range artifact.TrustStates {
		terms = append(terms, string(s))
	}
	for _, want := range []string{"published", "promoted", "deprecated", "retired", "unverified", "verified", "failed_verification", "revoked"} {
		if !slices.Contains(terms, want) {
			t.Errorf("state %s is not a state of the code", want)
		}
	}
	for _, want := range []string{"app_artifact.register", "app_artifact.promote", "app_artifact.deprecate", "app_artifact.retire",
		"app_artifact.verify", "app_artifact.revoke"} {
		if !slices.Contains(lifecycle.AuditActions, want) {
			t.Errorf("audit action %s is not one the code writes", want)
		}
	}
	terms = append(terms, lifecycle.AuditActions...)
	terms = append(terms,
		// headers
		"X-Project-ID", "X-Idempotency-Key", "X-Correlation-ID", "Idempotent-Replayed",
		// the envelope and the evidence to capture
		"code", "message", "correlation_id", "details", "trace_id", "org_id", "project_id", "artifact_id", "app_slug",
		"app_version", "repository", "digest", "digest_algorithm", "artifact_kind", "source_type", "lifecycle_state",
		"trust_state", "channel",
		// where an operator starts
		`{service="gpuaas-api"} | json | correlation_id=`, "doc/api/openapi.draft.yaml",
		// the escalation map
		"Tenant_Project_Authorization_Runbook.md", "CLI_Incident_and_Support_Triage_Runbook.md",
		"Python_SDK_Incident_and_Observability_Runbook.md", "API_Degradation_Runbook.md", "App_Runtime_Lifecycle_Incident_Runbook.md",
	)
	for _, term := range terms {
		if !strings.Contains(runbook, term) {
			t.Errorf("the runbook does not name %q", term)
		}
	}
	for _, f := range []string{"Tenant_Project_Authorization_Runbook.md", "CLI_Incident_and_Support_Triage_Runbook.md",
		"Python_SDK_Incident_and_Observability_Runbook.md", "API_Degradation_Runbook.md", "App_Runtime_Lifecycle_Incident_Runbook.md"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "doc", "operations", "runbooks", f)); err != nil {
			t.Errorf("escalation target missing: %v", err)
		}
	}
}
