package signature_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/signature"
	"github.com/gpuaas/app-artifacts/shared/signature/sigtest"
)

func pkixPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestPAE(t *testing.T) {
	tests := []struct {
		name        string
		payloadType string
		payload     string
		want        string
	}{
		{"dsse spec vector", "http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"empty", "", "", "DSSEv1 0  0 "},
		{"in-toto", "application/vnd.in-toto+json", `{"a":1}`, `DSSEv1 28 application/vnd.in-toto+json 7 {"a":1}`},
		{"multibyte counts bytes", "t", "é", "DSSEv1 1 t 2 é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(signature.PAE(tt.payloadType, []byte(tt.payload))); got != tt.want {
				t.Errorf("PAE(%q, %q) = %q, want %q", tt.payloadType, tt.payload, got, tt.want)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	p256 := sigtest.GenerateKey()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	good := sigtest.KeyPEM(&p256.PublicKey)

	tests := []struct {
		name    string
		pem     string
		wantErr bool
	}{
		{"P-256 PKIX", good, false},
		{"P-256 with surrounding whitespace", "\n  " + good + "\n\n", false},
		{"RSA rejected", pkixPEM(t, &rsaKey.PublicKey), true},
		{"P-384 rejected", pkixPEM(t, &p384.PublicKey), true},
		{"Ed25519 rejected", pkixPEM(t, edPub), true},
		{"private key block rejected", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), true},
		{"wrong block type", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), true},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})), true},
		{"not PEM", "not a key", true},
		{"empty", "", true},
		{"two keys", good + good, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signature.ParsePublicKeyPEM(tt.pem)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParsePublicKeyPEM() = %v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePublicKeyPEM() error = %v", err)
			}
			if !got.Equal(&p256.PublicKey) {
				t.Error("ParsePublicKeyPEM() returned a different key")
			}
		})
	}
}

func TestLegacyTag(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	got, err := signature.LegacyTag("sha256:" + hex)
	if err != nil || got != "sha256-"+hex+".sig" {
		t.Errorf("LegacyTag() = %q, %v", got, err)
	}
	for _, bad := range []string{"", hex, "sha512:" + hex, "sha256:" + hex[:63], "sha256:" + "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "sha256:" + hex[:63] + "g"} {
		if _, err := signature.LegacyTag(bad); err == nil {
			t.Errorf("LegacyTag(%q) succeeded, want error", bad)
		}
	}
}
