package signature

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Key is a trusted public key and the identifier Verify reports when a
// signature verifies with it.
type Key struct {
	KeyID  string
	Public *ecdsa.PublicKey
}

// ParsePublicKeyPEM parses a single PEM block of type "PUBLIC KEY" holding a
// PKIX-encoded ECDSA P-256 public key (the format of cosign.pub). Any other
// key type or curve, another block type, or trailing data is rejected.
func ParsePublicKeyPEM(pemText string) (*ecdsa.PublicKey, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil {
		return nil, errors.New("signature: no PEM block in public key")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("signature: unexpected data after the public key PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("signature: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signature: parse public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("signature: public key is %T, want ECDSA P-256", pub)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signature: public key curve is %s, want P-256", ec.Curve.Params().Name)
	}
	return ec, nil
}
