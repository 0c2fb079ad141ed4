package signature

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Media types, annotation keys and claim values of the two cosign formats.
const (
	// SimpleSigningMediaType is the media type of a legacy signature layer.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation holds the base64 ASN.1 signature on a legacy layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningType is the required critical.type of a legacy payload.
	SimpleSigningType = "cosign container image signature"

	// BundleMediaType is the sigstore bundle v0.3 media type: the referrer
	// manifest's artifactType, its layer's media type and the bundle's own
	// mediaType field.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// InTotoPayloadType is the DSSE payloadType of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// InTotoStatementType is the _type of an in-toto statement v1.
	InTotoStatementType = "https://in-toto.io/Statement/v1"
	// CosignSignPredicateType is the predicateType cosign (v3, bundle
	// format) gives an image signature; other predicates are attestations,
	// not signatures.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
)

// PAE is the DSSE pre-authentication encoding that DSSE signatures cover:
// "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths in ASCII decimal.
func PAE(payloadType string, payload []byte) []byte {
	var b strings.Builder
	b.Grow(len("DSSEv1") + len(payloadType) + len(payload) + 24)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return []byte(b.String())
}

// LegacyTag is the tag of the legacy cosign signature manifest for digest
// ("sha256-<hex>.sig").
func LegacyTag(digest string) (string, error) {
	h, err := sha256Hex(digest)
	if err != nil {
		return "", err
	}
	return "sha256-" + h + ".sig", nil
}

// sha256Hex returns the hex part of a "sha256:<64 lowercase hex>" digest.
func sha256Hex(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return "", fmt.Errorf("signature: malformed digest %q, want sha256:<64 lowercase hex>", digest)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("signature: malformed digest %q, want sha256:<64 lowercase hex>", digest)
	}
	return h, nil
}

// decodeBase64 accepts standard or URL-safe base64, padded or not (DSSE
// allows either alphabet; protobuf JSON writes standard).
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// manifest is the part of an OCI image manifest verification reads.
type manifest struct {
	MediaType    string       `json:"mediaType"`
	ArtifactType string       `json:"artifactType"`
	Config       descriptor   `json:"config"`
	Layers       []descriptor `json:"layers"`
	Subject      *descriptor  `json:"subject"`
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

// simpleSigning is a cosign simple-signing payload. encoding/json matches keys
// case-insensitively, as cosign does, so containers/image's
// "Docker-manifest-digest" spelling is read too.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// bundle is the part of a sigstore bundle v0.3 verification reads. The
// verificationMaterial (key hint, tlog entries) is deliberately ignored: the
// hint is never trusted, every trusted key is tried.
type bundle struct {
	MediaType    string        `json:"mediaType"`
	DSSEEnvelope *dsseEnvelope `json:"dsseEnvelope"`
}

type dsseEnvelope struct {
	Payload     string          `json:"payload"`
	PayloadType string          `json:"payloadType"`
	Signatures  []dsseSignature `json:"signatures"`
}

type dsseSignature struct {
	Sig   string `json:"sig"`
	KeyID string `json:"keyid"`
}

// statement is an in-toto statement v1.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}
