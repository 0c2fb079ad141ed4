package httpapi_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/internal/ddbtest"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// TestRouteSetsAgree holds template.yaml, the OpenAPI document and the code's
// route table to the same set of routes, served by the same functions.
func TestRouteSetsAgree(t *testing.T) {
	tmpl := ddbtest.Template(t)
	var fromTemplate, fromDoc, fromCode []string
	for _, r := range tmpl.Routes() {
		fromTemplate = append(fromTemplate, r.Method+" "+r.Path+" "+r.LogicalID)
	}
	logical := map[string]string{}
	for _, r := range httpapi.Routes {
		fromCode = append(fromCode, r.Key()+" "+r.LogicalID)
		logical[r.Key()] = r.LogicalID
	}
	for _, r := range doc.Routes() {
		fromDoc = append(fromDoc, r.Method+" "+r.Path+" "+logical[r.Method+" "+r.Path])
	}
	for _, s := range [][]string{fromTemplate, fromDoc, fromCode} {
		sort.Strings(s)
	}
	if diff := cmp.Diff(fromCode, fromTemplate); diff != "" {
		t.Errorf("template.yaml vs route table (-code +template):\n%s", diff)
	}
	if diff := cmp.Diff(fromCode, fromDoc); diff != "" {
		t.Errorf("OpenAPI vs route table (-code +doc):\n%s", diff)
	}
	// Every function has its main package, and nothing else does.
	root, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "functions"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs, names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "functions", e.Name(), "main.go")); err == nil {
			dirs = append(dirs, e.Name())
		}
	}
	for _, f := range app.Functions() {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	if diff := cmp.Diff(names, dirs); diff != "" {
		t.Errorf("functions/ vs app.Functions (-functions +dirs):\n%s", diff)
	}
}
