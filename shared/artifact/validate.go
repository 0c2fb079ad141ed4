package artifact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The validators below are written out rather than compiled from regular
// expressions at package init: every Lambda cold start would pay for those.

func lowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func alnum(c byte) bool { return lowerAlnum(c) || c >= 'A' && c <= 'Z' }

func lowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func tokenChar(c byte) bool { return alnum(c) || c == '.' || c == '_' || c == ':' || c == '-' }

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// hexDigest reports whether s is prefix followed by n lowercase hex digits.
func hexDigest(s, prefix string, n int) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	return ok && len(rest) == n && all(rest, lowerHex)
}

// component matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*, one OCI repository path component.
func component(s string) bool {
	i := 0
	for {
		start := i
		for i < len(s) && lowerAlnum(s[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == len(s) {
			return true
		}
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// Reasons for invalid input that callers can branch on.
const (
	ReasonInvalidField             = "invalid_field"
	ReasonDigestAlgorithm          = "digest_algorithm_mismatch"
	ReasonRepositoryNamespace      = "repository_not_in_project_namespace"
	ReasonSourceTypeNotAllowed     = "source_type_not_allowed"
	maxReasonLen                   = 1024
	maxIDLen                       = 64
	maxArtifactIDLen               = 128
	idempotencyMin, idempotencyMax = 8, 128
)

// MediaTypes are the manifest media types an artifact may be registered with.
var MediaTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// ValidSlug reports whether s is an app slug: SPEC's ^[a-z][a-z0-9-]{1,62}$,
// and not ending in a hyphen, since the slug is the last component of the
// app's repository and no OCI or ECR path component may end in one (ADR 0004).
func ValidSlug(s string) bool {
	return len(s) >= 2 && len(s) <= 63 && s[0] >= 'a' && s[0] <= 'z' && s[len(s)-1] != '-' &&
		all(s[1:], func(c byte) bool { return lowerAlnum(c) || c == '-' })
}

// ValidVersion reports whether s is an app version (an OCI tag).
func ValidVersion(s string) bool {
	return len(s) >= 1 && len(s) <= 128 && (alnum(s[0]) || s[0] == '_') &&
		all(s[1:], func(c byte) bool { return alnum(c) || c == '_' || c == '.' || c == '-' })
}

// ValidKind reports whether k is a known artifact kind.
func ValidKind(k Kind) bool {
	return k == KindContainerImage || k == KindHelmChart || k == KindOCIArtifact
}

// ValidSourceType reports whether s is a known source type.
func ValidSourceType(s SourceType) bool {
	return s == SourcePlatformPush || s == SourcePullThroughCache
}

// ValidMediaType reports whether m is an accepted manifest media type.
func ValidMediaType(m string) bool {
	for _, t := range MediaTypes {
		if m == t {
			return true
		}
	}
	return false
}

// CheckDigest validates an OCI digest in canonical form and that it agrees
// with the declared algorithm.
func CheckDigest(digest, algorithm string) error {
	switch {
	case hexDigest(digest, "sha256:", 64):
		if algorithm != "sha256" {
			return algorithmMismatch(algorithm)
		}
	case hexDigest(digest, "sha512:", 128):
		if algorithm != "sha512" {
			return algorithmMismatch(algorithm)
		}
	default:
		return Invalid(ReasonInvalidField, "digest", "digest must be sha256: followed by 64 lowercase hex digits, or sha512: followed by 128")
	}
	return nil
}

func algorithmMismatch(algorithm string) error {
	if algorithm != "sha256" && algorithm != "sha512" {
		return Invalid(ReasonInvalidField, "digest_algorithm", "digest_algorithm must be sha256 or sha512")
	}
	return Invalid(ReasonDigestAlgorithm, "digest_algorithm", "digest_algorithm does not agree with the digest")
}

// ValidID reports whether s can name an org or project: one lowercase
// repository path component, so the platform naming model stays valid.
func ValidID(s string) bool {
	return len(s) <= maxIDLen && component(s)
}

// ValidArtifactID reports whether s is shaped like an id this service issues
// (anything else cannot exist, so it is reported as not found).
func ValidArtifactID(s string) bool {
	return len(s) > 0 && len(s) <= maxArtifactIDLen && all(s, tokenChar)
}

// ValidToken reports whether s is a header token of [A-Za-z0-9._:-] within the length bounds.
func ValidToken(s string, min, max int) bool {
	return len(s) >= min && len(s) <= max && all(s, tokenChar)
}

// ValidIdempotencyKey reports whether k is acceptable as X-Idempotency-Key.
func ValidIdempotencyKey(k string) bool { return ValidToken(k, idempotencyMin, idempotencyMax) }

// ValidRepositoryName reports whether name is an OCI repository name.
func ValidRepositoryName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if !component(c) {
			return false
		}
	}
	return true
}

// ValidChannelName reports whether s can name a channel: ^[a-z][a-z0-9-]{0,31}$.
func ValidChannelName(s string) bool {
	return len(s) >= 1 && len(s) <= 32 && s[0] >= 'a' && s[0] <= 'z' &&
		all(s[1:], func(c byte) bool { return lowerAlnum(c) || c == '-' })
}

// CheckReason validates a caller's free-text reason.
func CheckReason(reason string, required bool) error {
	if strings.TrimSpace(reason) == "" {
		if required {
			return Invalid("missing_reason", "reason", "reason is required")
		}
		return nil
	}
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) || strings.IndexFunc(reason, unicode.IsControl) >= 0 {
		return Invalid(ReasonInvalidField, "reason", "reason must be at most 1024 bytes of printable text")
	}
	return nil
}
