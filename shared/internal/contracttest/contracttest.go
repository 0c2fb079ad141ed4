package contracttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// DocPath is the contract's location relative to the repository root.
const DocPath = "doc/api/openapi.draft.yaml"

// Doc is the loaded, validated OpenAPI contract with a router over its
// operations. It is safe for concurrent use.
type Doc struct {
	// T is the loaded document. Treat it as read-only.
	T      *openapi3.T
	router routers.Router
	// mu serialises validation: kin-openapi does not document its
	// validators as safe for concurrent use.
	mu sync.Mutex
}

// RouteKey names one operation of the contract.
type RouteKey struct {
	Method string // upper-case, e.g. "GET"
	Path   string // as written in the document, e.g. "/api/v1/projects/{project_id}/app-artifacts"
}

var (
	loadOnce sync.Once
	loaded   *Doc
	loadErr  error
)

// Load returns the contract of the repository holding this package, loaded
// and validated once per test binary. It fails tb if the document cannot be
// found, parsed or validated.
func Load(tb testing.TB) *Doc {
	tb.Helper()
	loadOnce.Do(func() { loaded, loadErr = load() })
	if loadErr != nil {
		tb.Fatalf("contracttest: %v", loadErr)
	}
	return loaded
}

func load() (*Doc, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	return LoadFile(filepath.Join(root, filepath.FromSlash(DocPath)))
}

// LoadFile loads and validates the OpenAPI document at path.
func LoadFile(path string) (*Doc, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := t.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate %s: %w", path, err)
	}
	router, err := legacy.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", path, err)
	}
	return &Doc{T: t, router: router}, nil
}

// repoRoot walks up from the working directory, then from this source file,
// to the nearest directory holding go.mod.
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(DocPath))); err == nil {
					return dir, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("no go.mod with " + DocPath + " above the working directory")
}

// Routes returns every operation of the document, sorted by Path then Method.
func (d *Doc) Routes() []RouteKey {
	var out []RouteKey
	for path, item := range d.T.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, RouteKey{Method: strings.ToUpper(method), Path: path})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// ValidateResponse fails tb unless the response is one the contract allows
// for this request: the route exists, the status is declared, the body
// matches the status's schema and the required response headers are present.
// rawPath is the request path (e.g. "/api/v1/projects/p1/app-artifacts"),
// query the raw query string without "?". Header names are case-insensitive.
func (d *Doc) ValidateResponse(tb testing.TB, method, rawPath string, query string, status int, headers map[string]string, body []byte) {
	tb.Helper()
	if err := d.Check(method, rawPath, query, status, headers, body); err != nil {
		tb.Errorf("contracttest: %v", err)
	}
}

// Check is the non-failing form of ValidateResponse: it returns why the
// response breaks the contract, or nil.
func (d *Doc) Check(method, rawPath string, query string, status int, headers map[string]string, body []byte) error {
	method = strings.ToUpper(method)
	what := fmt.Sprintf("%s %s -> %d", method, rawPath, status)
	if raw, q, ok := strings.Cut(rawPath, "?"); ok {
		rawPath = raw
		if query == "" {
			query = q
		}
	}
	u := &url.URL{Path: rawPath, RawQuery: query}
	if unescaped, err := url.PathUnescape(rawPath); err == nil && unescaped != rawPath {
		u.Path, u.RawPath = unescaped, rawPath
	}
	req := &http.Request{
		Method:     method,
		URL:        u,
		RequestURI: u.RequestURI(),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "",
	}

	h := make(http.Header, len(headers))
	for k, v := range headers {
		h.Add(k, v) // canonicalises the name: lookups are case-insensitive
	}

	d.mu.Lock()
	defer d.mu.Unlock()

	route, pathParams, err := d.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s: no such operation in the contract: %w", what, err)
	}
	if route.Operation.Responses.Status(status) == nil {
		return fmt.Errorf("%s: status %d is not declared for %s %s (declared: %s)",
			what, status, method, route.Path, strings.Join(declared(route.Operation), ", "))
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:     req,
			PathParams:  pathParams,
			QueryParams: u.Query(),
			Route:       route,
			Options: &openapi3filter.Options{
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
				ExcludeRequestBody: true,
			},
		},
		Status:  status,
		Header:  h,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: responseOptions(),
	}
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fmt.Errorf("%s: response breaks the contract: %w\nbody: %s", what, err, truncate(body, 2048))
	}
	return nil
}

func responseOptions() *openapi3filter.Options {
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	// Short messages: the JSON pointer and the reason, not the whole schema.
	opts.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		if err.Reason == "" {
			return ""
		}
		return fmt.Sprintf("at %q: %s", "/"+strings.Join(err.JSONPointer(), "/"), err.Reason)
	})
	return opts
}

func declared(op *openapi3.Operation) []string {
	var out []string
	for code := range op.Responses.Map() {
		out = append(out, code)
	}
	sort.Strings(out)
	return out
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "...(truncated)"
}
