package artifact_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// The validators are checked against hand-written readings of the grammars
// in SPEC section 4 and the OCI distribution spec, not against their own
// regular expressions: any input either both accept or both refuse.

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// canonicalDigest reads "sha256:" + 64 lowercase hex or "sha512:" + 128.
func canonicalDigest(d string) (algorithm string, ok bool) {
	alg, hex, found := strings.Cut(d, ":")
	switch {
	case !found || !isLowerHex(hex):
		return "", false
	case alg == "sha256" && len(hex) == 64, alg == "sha512" && len(hex) == 128:
		return alg, true
	}
	return "", false
}

func FuzzCheckDigest(f *testing.F) {
	for _, s := range [][2]string{
		{"sha256:" + strings.Repeat("a", 64), "sha256"},
		{"sha512:" + strings.Repeat("0", 128), "sha512"},
		{"sha256:" + strings.Repeat("a", 64), "sha512"},
		{"sha256:" + strings.Repeat("A", 64), "sha256"},
		{"sha256:" + strings.Repeat("a", 64) + "\n", "sha256"},
		{"sha256:" + strings.Repeat("a", 63), "sha256"},
		{"sha384:" + strings.Repeat("a", 96), "sha384"},
		{"sha256:" + strings.Repeat("a", 64), "md5"},
		{"", ""},
		{"sha256:", "sha256"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, digest, algorithm string) {
		err := artifact.CheckDigest(digest, algorithm)
		alg, canonical := canonicalDigest(digest)
		if (err == nil) != (canonical && alg == algorithm) {
			t.Fatalf("CheckDigest(%q, %q) = %v; canonical=%v algorithm=%q", digest, algorithm, err, canonical, alg)
		}
		if err == nil {
			return
		}
		var e *artifact.Error
		if !errors.As(err, &e) || e.Code != artifact.CodeInvalidRequest || e.Status != 0 {
			t.Fatalf("CheckDigest(%q, %q): %#v is not a 400 invalid_request", digest, algorithm, err)
		}
		field, _ := e.Details["field"].(string)
		switch {
		case !canonical && (e.Reason() != artifact.ReasonInvalidField || field != "digest"):
			t.Fatalf("CheckDigest(%q, %q): non-canonical digest reported as %s on %q", digest, algorithm, e.Reason(), field)
		case canonical && field != "digest_algorithm":
			t.Fatalf("CheckDigest(%q, %q): algorithm mismatch reported on %q", digest, algorithm, field)
		case canonical && algorithm != "sha256" && algorithm != "sha512" && e.Reason() != artifact.ReasonInvalidField:
			t.Fatalf("CheckDigest(%q, %q): unknown algorithm reported as %s", digest, algorithm, e.Reason())
		case canonical && (algorithm == "sha256" || algorithm == "sha512") && e.Reason() != artifact.ReasonDigestAlgorithm:
			t.Fatalf("CheckDigest(%q, %q): mismatch reported as %s", digest, algorithm, e.Reason())
		}
	})
}

// ociComponent reads one path component of the OCI distribution spec:
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
func ociComponent(c string) bool {
	alnum := func(b byte) bool { return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' }
	i := 0
	run := func() bool {
		start := i
		for i < len(c) && alnum(c[i]) {
			i++
		}
		return i > start
	}
	if !run() {
		return false
	}
	for i < len(c) {
		switch {
		case c[i] == '.':
			i++
		case strings.HasPrefix(c[i:], "__"):
			i += 2
		case c[i] == '_':
			i++
		case c[i] == '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
		if !run() {
			return false
		}
	}
	return true
}

func ociRepository(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if !ociComponent(c) {
			return false
		}
	}
	return true
}

func FuzzValidRepositoryName(f *testing.F) {
	for _, s := range [][4]string{
		{"gpuaas/org-acme/proj-alpha/vision-api", "org-acme", "proj-alpha", "vision-api"},
		{"library/nginx", "o", "p", "ab"},
		{"a__b/c.d/e---f", "a.b", "c_d", "e-f"},
		{"a___b", "a", "b", "cd"},
		{"/leading", "", "p", "ab"},
		{"trailing/", "o", "", "ab"},
		{"double//slash", "o", "p", "a"},
		{"UPPER/case", "O", "p", "ab"},
		{"a-/b", "o-", "p", "ab-"},
		{strings.Repeat("a", 257), strings.Repeat("o", 65), "p", strings.Repeat("s", 64)},
		{"ünï/code", "ö", "p", "ab"},
		{"gpuaas/org-acme/proj-alpha/ab-", "org-acme", "proj-alpha", "ab-"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, org, project, slug string) {
		if got, want := artifact.ValidRepositoryName(name), ociRepository(name); got != want {
			t.Fatalf("ValidRepositoryName(%q) = %v, the OCI grammar says %v", name, got, want)
		}
		// The platform naming model only ever builds valid names from valid
		// parts, so what an intent promises can be pushed and registered.
		if artifact.ValidID(org) && artifact.ValidID(project) && artifact.ValidSlug(slug) {
			name := artifact.RepositoryName(org, project, slug)
			if !artifact.ValidRepositoryName(name) {
				t.Fatalf("valid org %q, project %q, slug %q give the invalid repository %q", org, project, slug, name)
			}
		}
	})
}

func FuzzValidVersion(f *testing.F) {
	for _, s := range []string{"1.0.0", "v2", "_x", "latest", "-1.0", ".hidden", "", strings.Repeat("v", 128), strings.Repeat("v", 129), "1.0\n", "1.0 beta", "ä"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tagChar := func(b byte, first bool) bool {
			return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || !first && (b == '.' || b == '-')
		}
		want := len(v) >= 1 && len(v) <= 128
		for i := 0; want && i < len(v); i++ {
			want = tagChar(v[i], i == 0)
		}
		if got := artifact.ValidVersion(v); got != want {
			t.Fatalf("ValidVersion(%q) = %v, the OCI tag grammar says %v", v, got, want)
		}
	})
}

func FuzzValidSlug(f *testing.F) {
	for _, s := range []string{"vision-api", "ab", "a", "a-", "1abc", "Abc", "ab_c", strings.Repeat("a", 63), strings.Repeat("a", 64), "ab\n", "ab-", "a--b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) >= 2 && len(s) <= 63 && 'a' <= s[0] && s[0] <= 'z'
		for i := 1; want && i < len(s); i++ {
			want = 'a' <= s[i] && s[i] <= 'z' || '0' <= s[i] && s[i] <= '9' || s[i] == '-'
		}
		want = want && !strings.HasSuffix(s, "-") // ADR 0004: it ends the repository name
		if got := artifact.ValidSlug(s); got != want {
			t.Fatalf("ValidSlug(%q) = %v, SPEC's ^[a-z][a-z0-9-]{1,62}$ without a trailing hyphen says %v", s, got, want)
		}
	})
}
