package registry

// Design.
//
// Storage: github.com/google/go-containerregistry/pkg/registry (in memory,
// referrers on) is the only store of bytes. Registry wraps it: OCI requests
// go to it unchanged except manifest PUT/DELETE (validated, indexed, hooked)
// and referrers GET (artifactType fixed, filter applied). The ECR JSON API
// reads manifest bytes back through the same handler in process
// (httptest.NewRecorder), so what `crane push` wrote is byte for byte what
// BatchGetImage returns.
//
// Metadata the OCI registry cannot answer (which repositories exist and
// their settings, which digests a repository holds, their tags, push time,
// media type) lives in a small index kept here, updated under one mutex
// together with the manifest write it describes.
//
// Repositories: a repository exists once CreateRepository named it or once
// a manifest was pushed to it (ECR's "create on push" with the defaults
// CreateRepository would use: MUTABLE tags, no scan on push, AES256). A blob
// upload alone does not create one. A repository created IMMUTABLE refuses
// any manifest PUT to a tag it already has, even with the same digest, as
// ECR does (400 TAG_INVALID).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
)

// Options configures a Registry. The zero value works.
type Options struct {
	// RegistryID is the 12-digit account the ECR API reports; default "000000000000".
	RegistryID string
	// Region appears in repository ARNs; default "us-east-1".
	Region string
	// OnPush, when set, is called after every successful manifest PUT by
	// tag (never for a PUT by digest), synchronously on the request's
	// goroutine after the manifest is stored and before the response is
	// sent; calls from different requests may run concurrently.
	OnPush func(ev PushEvent)
	// Logger receives one line per OCI request; nil discards them.
	Logger *log.Logger
	// StateDir, when set, keeps the registry across restarts: blobs on
	// disk, and a journal of repository creations and manifest writes that
	// New replays (without push events: they were announced already).
	StateDir string
}

// PushEvent describes one successful manifest push by tag.
type PushEvent struct {
	RegistryID        string
	Repository        string
	Tag               string
	Digest            string // "sha256:<hex>" of the manifest bytes
	MediaType         string // the manifest's media type (Content-Type of the PUT)
	ArtifactMediaType string // artifactType, else config.mediaType; "" for an index without artifactType
	Time              time.Time
}

// Registry is an http.Handler serving the OCI distribution API under /v2/
// and the ECR JSON API (POST with X-Amz-Target) on the same store.
type Registry struct {
	oci        http.Handler
	registryID string
	region     string
	onPush     func(PushEvent)
	now        func() time.Time

	mu     sync.Mutex
	repos  map[string]*repo
	faults map[string]error // ECR op (or "*") -> injected error

	journal   *journal // nil: nothing is kept
	replaying bool     // New is replaying the journal: no events, no new entries
}

type repo struct {
	name       string
	createdAt  time.Time
	mutability string
	scanOnPush bool
	encType    string
	kmsKey     string
	images     map[string]*image // digest -> image
	tags       map[string]string // tag -> digest
}

type image struct {
	digest            string
	mediaType         string
	artifactMediaType string
	subject           string
	size              int64
	pushedAt          time.Time
	tags              []string
}

// New returns an empty registry.
func New(opts Options) *Registry {
	r := &Registry{
		registryID: opts.RegistryID,
		region:     opts.Region,
		onPush:     opts.OnPush,
		now:        time.Now,
		repos:      map[string]*repo{},
		faults:     map[string]error{},
	}
	if r.registryID == "" {
		r.registryID = "000000000000"
	}
	if r.region == "" {
		r.region = "us-east-1"
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	ggcrOpts := []ggcr.Option{ggcr.WithReferrersSupport(true), ggcr.Logger(logger)}
	if opts.StateDir != "" {
		ggcrOpts = append(ggcrOpts, ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(filepath.Join(opts.StateDir, "blobs"))))
	}
	r.oci = ggcr.New(ggcrOpts...)
	return r
}

// Open is New with opts.StateDir restored: the journal is replayed, then
// kept appending.
func Open(opts Options) (*Registry, error) {
	if opts.StateDir == "" {
		return New(opts), nil
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "blobs"), 0o700); err != nil {
		return nil, fmt.Errorf("registry.Open: %w", err)
	}
	r := New(opts)
	j, entries, err := openJournal(filepath.Join(opts.StateDir, "journal.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("registry.Open: %w", err)
	}
	r.replaying = true
	for _, e := range entries {
		at := e.At
		r.now = func() time.Time { return at }
		switch e.Op {
		case "create":
			r.createRepository(e.Body, "")
		case "put":
			req := internalRequest(http.MethodPut, "/v2/"+e.Repo+"/manifests/"+e.Ref)
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(e.Body)), int64(len(e.Body))
			req.Header.Set("Content-Type", e.MediaType)
			r.putManifest(httptest.NewRecorder(), req, e.Repo, e.Ref)
		case "delete":
			r.deleteManifest(httptest.NewRecorder(), internalRequest(http.MethodDelete, "/v2/"+e.Repo+"/manifests/"+e.Ref), e.Repo, e.Ref)
		}
	}
	r.now, r.replaying, r.journal = time.Now, false, j
	return r, nil
}

// Close closes the journal.
func (r *Registry) Close() error {
	if r.journal == nil {
		return nil
	}
	return r.journal.close()
}

// record appends a journal entry for a change that succeeded.
func (r *Registry) record(e journalEntry) {
	if r.journal == nil || r.replaying {
		return
	}
	e.At = r.now().UTC()
	r.journal.append(e)
}

// Repositories lists the repositories that exist, sorted.
func (r *Registry) Repositories() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.repos))
	for n := range r.repos {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// APIError is an ECR JSON API error: HTTP status, __type and message.
type APIError struct {
	Status  int
	Type    string
	Message string
}

func (e *APIError) Error() string { return e.Type + ": " + e.Message }

// Errors for FailECR.
var (
	ErrThrottling = &APIError{Status: http.StatusBadRequest, Type: "ThrottlingException", Message: "Rate exceeded"}
	ErrServer     = &APIError{Status: http.StatusInternalServerError, Type: "ServerException", Message: "injected server error"}
)

// FailECR makes every later call of the ECR operation op (for example
// "BatchGetImage"; "*" for all) fail with err until FailECR(op, nil) clears
// it. An *APIError is answered as given; any other error is a 500
// ServerException carrying its text.
func (r *Registry) FailECR(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.faults, op)
		return
	}
	r.faults[op] = err
}

// ServeHTTP implements http.Handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get("X-Amz-Target") != "" || (req.Method == http.MethodPost && req.URL.Path == "/") {
		r.serveECR(w, req)
		return
	}
	name, kind, ref, ok := splitV2(req.URL.Path)
	switch {
	case ok && kind == "manifests" && req.Method == http.MethodPut:
		r.putManifest(w, req, name, ref)
	case ok && kind == "manifests" && req.Method == http.MethodDelete:
		r.deleteManifest(w, req, name, ref)
	case ok && kind == "referrers" && req.Method == http.MethodGet:
		r.referrers(w, req, name, ref)
	default:
		r.oci.ServeHTTP(w, req)
	}
}

// splitV2 splits /v2/<name>/<kind>/<ref>.
func splitV2(path string) (name, kind, ref string, ok bool) {
	elems := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(elems) < 4 || elems[0] != "v2" {
		return "", "", "", false
	}
	n := len(elems)
	return strings.Join(elems[1:n-2], "/"), elems[n-2], elems[n-1], true
}

var (
	repoNameRE = regexp.MustCompile(`^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$`)
	tagRE      = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRE   = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

func validRepoName(n string) bool { return len(n) >= 2 && len(n) <= 256 && repoNameRE.MatchString(n) }

const maxManifestBytes = 4 << 20

// manifestFields are the parts of an image manifest or index the index needs.
type manifestFields struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Layers []struct {
		Size int64 `json:"size"`
	} `json:"layers"`
	Manifests []struct {
		Digest string `json:"digest"`
	} `json:"manifests"`
	Subject *struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	Annotations map[string]string `json:"annotations"`
}

func (m *manifestFields) artifactMediaType() string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if m.Config != nil {
		return m.Config.MediaType
	}
	return ""
}

func ociError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestBytes+1))
	if err != nil {
		ociError(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading manifest: "+err.Error())
		return
	}
	if len(body) > maxManifestBytes {
		ociError(w, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID", "manifest larger than 4 MiB")
		return
	}
	if !validRepoName(name) {
		ociError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", name))
		return
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	byTag := !strings.Contains(ref, ":")
	if byTag && !tagRE.MatchString(ref) {
		ociError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("invalid tag %q", ref))
		return
	}
	if !byTag && ref != digest {
		ociError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("manifest digest %s does not match %s", digest, ref))
		return
	}
	var mf manifestFields
	if err := json.Unmarshal(body, &mf); err != nil {
		ociError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest is not JSON: "+err.Error())
		return
	}
	mediaType := req.Header.Get("Content-Type")
	if mediaType == "" {
		mediaType = mf.MediaType
	}
	if mediaType == "" {
		ociError(w, http.StatusBadRequest, "MANIFEST_INVALID", "no media type: set Content-Type or mediaType")
		return
	}

	r.mu.Lock()
	rp := r.repos[name]
	if byTag && rp != nil && rp.mutability == "IMMUTABLE" {
		if _, exists := rp.tags[ref]; exists {
			r.mu.Unlock()
			ociError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf(
				"The image tag '%s' already exists in the '%s' repository and cannot be overwritten because the tag is immutable.", ref, name))
			return
		}
	}
	in := req.Clone(req.Context())
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.ContentLength = int64(len(body))
	in.Header.Set("Content-Type", mediaType)
	rec := httptest.NewRecorder()
	r.oci.ServeHTTP(rec, in)
	if rec.Code != http.StatusCreated {
		r.mu.Unlock()
		copyRecorded(w, rec)
		return
	}
	now := r.now().UTC()
	if rp == nil {
		rp = r.newRepo(name, now)
	}
	img := rp.images[digest]
	if img == nil {
		img = &image{digest: digest, pushedAt: now}
		rp.images[digest] = img
	}
	img.mediaType = mediaType
	img.artifactMediaType = mf.artifactMediaType()
	img.subject = ""
	if mf.Subject != nil {
		img.subject = mf.Subject.Digest
	}
	img.size = 0
	for _, l := range mf.Layers {
		img.size += l.Size
	}
	for _, m := range mf.Manifests { // an index: the largest child known
		if c := rp.images[m.Digest]; c != nil && c.size > img.size {
			img.size = c.size
		}
	}
	if byTag {
		if old := rp.tags[ref]; old != "" && old != digest {
			if o := rp.images[old]; o != nil {
				o.tags = slices.DeleteFunc(o.tags, func(t string) bool { return t == ref })
			}
		}
		rp.tags[ref] = digest
		if !slices.Contains(img.tags, ref) {
			img.tags = append(img.tags, ref)
			sort.Strings(img.tags)
		}
	}
	registryID := r.registryID
	r.mu.Unlock()

	if mf.Subject != nil {
		rec.Header().Set("OCI-Subject", mf.Subject.Digest)
	}
	r.record(journalEntry{Op: "put", Repo: name, Ref: ref, MediaType: mediaType, Body: body})
	if byTag && r.onPush != nil && !r.replaying {
		r.onPush(PushEvent{
			RegistryID: registryID, Repository: name, Tag: ref, Digest: digest,
			MediaType: mediaType, ArtifactMediaType: mf.artifactMediaType(), Time: now,
		})
	}
	copyRecorded(w, rec)
}

// newRepo records a repository created by a push; r.mu must be held.
func (r *Registry) newRepo(name string, now time.Time) *repo {
	rp := &repo{
		name: name, createdAt: now, mutability: "MUTABLE", encType: "AES256",
		images: map[string]*image{}, tags: map[string]string{},
	}
	r.repos[name] = rp
	return rp
}

// deleteManifest deletes by digest (the image and all its tags) or by tag.
func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := httptest.NewRecorder()
	r.oci.ServeHTTP(rec, req)
	if rec.Code == http.StatusAccepted {
		r.record(journalEntry{Op: "delete", Repo: name, Ref: ref})
		if rp := r.repos[name]; rp != nil {
			if img := rp.images[ref]; img != nil {
				for _, t := range img.tags {
					delete(rp.tags, t)
					r.oci.ServeHTTP(httptest.NewRecorder(), internalRequest(http.MethodDelete, "/v2/"+name+"/manifests/"+t))
				}
				delete(rp.images, ref)
			} else if d, ok := rp.tags[ref]; ok {
				delete(rp.tags, ref)
				if img := rp.images[d]; img != nil {
					img.tags = slices.DeleteFunc(img.tags, func(t string) bool { return t == ref })
				}
			}
		}
	}
	copyRecorded(w, rec)
}

// referrers serves GET /v2/<name>/referrers/<digest> from the OCI store,
// reporting each referrer's artifactType as the OCI 1.1 spec says (the
// manifest's artifactType, else its config media type) and honouring the
// artifactType filter.
func (r *Registry) referrers(w http.ResponseWriter, req *http.Request, name, subject string) {
	rec := httptest.NewRecorder()
	r.oci.ServeHTTP(rec, req)
	var idx struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
	}
	switch {
	case rec.Code == http.StatusNotFound && r.repoExists(name) && digestRE.MatchString(subject):
		// A repository created but never pushed to: no referrers yet.
	case rec.Code != http.StatusOK:
		copyRecorded(w, rec)
		return
	default:
		if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
			ociError(w, http.StatusInternalServerError, "UNKNOWN", "referrers: "+err.Error())
			return
		}
	}
	filter := req.URL.Query().Get("artifactType")
	type desc struct {
		MediaType    string            `json:"mediaType"`
		Digest       string            `json:"digest"`
		Size         int64             `json:"size"`
		ArtifactType string            `json:"artifactType,omitempty"`
		Annotations  map[string]string `json:"annotations,omitempty"`
	}
	out := []desc{}
	for _, raw := range idx.Manifests {
		var d desc
		if json.Unmarshal(raw, &d) != nil {
			continue
		}
		if body, _, ok := r.manifestBytes(name, d.Digest); ok {
			var mf manifestFields
			if json.Unmarshal(body, &mf) == nil {
				d.ArtifactType = mf.artifactMediaType()
				d.Annotations = mf.Annotations
			}
		}
		if filter != "" && d.ArtifactType != filter {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	b, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     out,
	})
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (r *Registry) repoExists(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repos[name] != nil
}

// manifestBytes reads a manifest (by digest or tag) from the OCI store.
func (r *Registry) manifestBytes(name, ref string) (body []byte, mediaType string, ok bool) {
	rec := httptest.NewRecorder()
	r.oci.ServeHTTP(rec, internalRequest(http.MethodGet, "/v2/"+name+"/manifests/"+ref))
	if rec.Code != http.StatusOK {
		return nil, "", false
	}
	return rec.Body.Bytes(), rec.Header().Get("Content-Type"), true
}

// internalRequest is a request to the OCI store from inside this process
// (httptest.NewRequest would panic on a path with a space in it).
func internalRequest(method, path string) *http.Request {
	req, _ := http.NewRequest(method, "/", nil)
	req.URL.Path = path
	return req
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
