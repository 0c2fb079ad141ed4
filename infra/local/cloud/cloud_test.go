package cloud_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

func start(t *testing.T, state string) *cloud.Stack {
	t.Helper()
	repo, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := cloud.Start(cloud.Options{RepoRoot: repo, StateDir: state, APIAddr: "127.0.0.1:0", DynamoAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

type client struct {
	t     *testing.T
	base  string
	token string
	n     int
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (c *client) call(method, path, body string, hdr map[string]string) answer {
	c.t.Helper()
	c.n++
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("X-Project-ID", "proj-alpha")
	if method == http.MethodPost {
		req.Header.Set("X-Idempotency-Key", fmt.Sprintf("e2e-key-%d-%d", time.Now().UnixNano(), c.n))
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, header: res.Header, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a
}

const base = "/api/v1/projects/proj-alpha/app-artifacts"

func mint(t *testing.T, st *cloud.Stack, id cloud.Identity) string {
	t.Helper()
	tok, err := cloud.Mint(st.Key, id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLocalCloudEndToEnd(t *testing.T) {
	state := t.TempDir()
	st := start(t, state)
	dev := &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "alice", Org: "org-acme", ProjectRoles: []string{"proj-alpha:developer"}})}
	admin := &client{t: t, base: st.APIURL, token: mint(t, st, cloud.Identity{Subject: "root", Org: "org-acme", ProjectRoles: []string{"proj-alpha:admin"}})}

	intent := dev.call("POST", base+"/publish-intents", `{"app_slug":"vision-api","app_version":"1.0.0","artifact_kind":"container_image","source_type":"platform_push"}`, nil)
	if intent.status != 201 || intent.body["repository"] != strings.TrimPrefix(st.RegistryURL, "http://")+"/gpuaas/org-acme/proj-alpha/vision-api" {
		t.Fatalf("intent: %d %s", intent.status, intent.raw)
	}
	// By digest: this test registers through the API (the push path, which
	// would race it, is push_test.go's).
	digest, mediaType := push(t, st, "gpuaas/org-acme/proj-alpha/vision-api", "")
	pushed := time.Now()
	reg := dev.call("POST", base, fmt.Sprintf(`{"app_slug":"vision-api","app_version":"1.0.0","repository":%q,"digest":%q,"digest_algorithm":"sha256","artifact_kind":"container_image","source_type":"platform_push","media_type":%q,"publish_intent_id":%q}`,
		intent.body["repository"], digest, mediaType, intent.body["intent_id"]), nil)
	if reg.status != 201 {
		t.Fatalf("register: %d %s", reg.status, reg.raw)
	}
	id := reg.body["artifact_id"].(string)
	// The outbox, the bus, the verifier rule and the ECR API verify it.
	verified := waitTrust(t, dev, id, "verified")
	t.Logf("registered to verified in %v", time.Since(pushed).Round(time.Millisecond))
	if verified.body["trust_reason"] != nil {
		t.Fatalf("verified with a reason: %s", verified.raw)
	}
	if list := dev.call("GET", base+"?app_slug=vision-api", "", nil); list.status != 200 || len(list.body["items"].([]any)) != 1 {
		t.Fatalf("list: %d %s", list.status, list.raw)
	}
	for _, s := range []struct {
		c     *client
		path  string
		body  string
		state string
	}{
		{dev, "/promote", `{"channel":"dev"}`, "promoted"},
		{admin, "/promote", `{"channel":"production"}`, "promoted"},
		{dev, "/deprecate", `{"reason":"superseded"}`, "deprecated"},
		{admin, "/retire", ``, "retired"},
	} {
		a := s.c.call("POST", base+"/"+id+s.path, s.body, nil)
		if a.status != 200 || a.body["lifecycle_state"] != s.state {
			t.Fatalf("%s: %d %s", s.path, a.status, a.raw)
		}
		if a.header.Get("X-Correlation-ID") == "" || a.header.Get("Apigw-Requestid") == "" {
			t.Fatalf("%s: headers %v", s.path, a.header)
		}
	}
	// Errors come from the functions in the envelope; unknown paths from the gateway.
	if a := dev.call("GET", base+"/art_01JNOPE0000000000000000000", "", nil); a.status != 404 || a.body["error"].(map[string]any)["code"] != "app_artifact_not_found" {
		t.Fatalf("missing: %d %s", a.status, a.raw)
	}
	if a := dev.call("GET", "/nowhere", "", nil); a.status != 404 || a.raw != `{"message":"Not Found"}` {
		t.Fatalf("unknown route: %d %s", a.status, a.raw)
	}

	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := cloud.Identity{Subject: "alice", Org: "org-acme", ProjectRoles: []string{"proj-alpha:developer"}}
	expired, _ := cloud.Mint(st.Key, good, time.Now().Add(-2*time.Hour), time.Hour)
	notYet, _ := cloud.Mint(st.Key, good, time.Now().Add(time.Hour), time.Hour)
	wrongKey, _ := cloud.Mint(other, good, time.Now(), time.Hour)
	wrongAud := forge(t, st, map[string]any{"aud": "someone-else"})
	wrongIss := forge(t, st, map[string]any{"iss": "https://evil.example/"})
	noExp := forge(t, st, map[string]any{"exp": nil})
	for name, tok := range map[string]string{"missing": "", "expired": expired, "not yet valid": notYet, "wrongly signed": wrongKey,
		"wrong audience": wrongAud, "wrong issuer": wrongIss, "no expiry": noExp, "garbage": "not.a.jwt"} {
		c := &client{t: t, base: st.APIURL, token: tok}
		a := c.call("GET", base, "", nil)
		if diff := cmp.Diff([]any{401, `{"message":"Unauthorized"}`}, []any{a.status, a.raw}); diff != "" {
			t.Errorf("%s token (-want +got):\n%s", name, diff)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: what was written before the shutdown is there after it.
	st2 := start(t, state)
	defer st2.Close()
	again := &client{t: t, base: st2.APIURL, token: mint(t, st2, good)}
	got := again.call("GET", base+"/"+id, "", nil)
	if got.status != 200 || got.body["lifecycle_state"] != "retired" || got.body["revision"] != float64(6) {
		t.Fatalf("after restart: %d %s", got.status, got.raw)
	}
	if a := again.call("GET", "/api/v1/projects/proj-alpha/app-artifacts", "", map[string]string{}); a.status != 200 || len(a.body["items"].([]any)) != 1 {
		t.Fatalf("list after restart: %d %s", a.status, a.raw)
	}
	// So is the registry: the pushed image, by digest.
	ref, err := name.ParseReference(trimHTTP(st2.RegistryURL)+"/gpuaas/org-acme/proj-alpha/vision-api@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref); err != nil {
		t.Fatalf("image after restart: %v", err)
	}
}

// forge signs claims that differ from a good token's by overrides (nil deletes).
func forge(t *testing.T, st *cloud.Stack, overrides map[string]any) string {
	t.Helper()
	tok, err := cloud.MintClaims(st.Key, func(c map[string]any) {
		c["sub"], c["org_id"], c["project_roles"] = "alice", "org-acme", "proj-alpha:developer"
		for k, v := range overrides {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPortTaken(t *testing.T) {
	l, err := cloud.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	repo, _ := samtemplate.FindRepoRoot()
	_, err = cloud.Start(cloud.Options{RepoRoot: repo, StateDir: t.TempDir(), APIAddr: l.Addr().String(), DynamoAddr: "127.0.0.1:0"})
	if _, ok := err.(*cloud.ListenError); !ok || !strings.Contains(err.Error(), "cannot listen on "+l.Addr().String()) {
		t.Fatalf("want a ListenError naming the address, got %v", err)
	}
}

// push writes a random image to the local registry by tag and returns its
// digest and manifest media type. With tag "" it pushes by digest, which
// emits no push event (ECR announces pushes by tag), so nothing registers it
// behind the test's back.
func push(t *testing.T, st *cloud.Stack, repo, tag string) (string, string) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	at := ":" + tag
	if tag == "" {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		at = "@" + d.String()
	}
	ref, err := name.ParseReference(strings.TrimPrefix(st.RegistryURL, "http://")+"/"+repo+at, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), string(mt)
}

// waitTrust polls the artifact until its trust_state is want (10 s at most).
func waitTrust(t *testing.T, c *client, id, want string) answer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := c.call("GET", base+"/"+id, "", nil)
		if a.body["trust_state"] == want {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("trust_state still %v after 10s: %s", a.body["trust_state"], a.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
