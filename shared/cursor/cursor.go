package cursor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// ErrInvalid is returned for any token that was not sealed by this codec
// with this key, whatever is wrong with it.
var ErrInvalid = errors.New("cursor: invalid")

// Codec seals and opens cursors with an HMAC-SHA256 key.
type Codec struct{ key []byte }

// New returns a codec for key, which must be at least 32 bytes.
func New(key []byte) (*Codec, error) {
	if len(key) < 32 {
		return nil, errors.New("cursor.New: key shorter than 32 bytes")
	}
	return &Codec{key: append([]byte(nil), key...)}, nil
}

// Seal encodes v and signs it.
func (c *Codec) Seal(v any) (string, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(c.mac(payload)), nil
}

// Open verifies tok and decodes it into v. Any modification gives ErrInvalid.
func (c *Codec) Open(tok string, v any) error {
	if len(tok) > 2048 {
		return ErrInvalid
	}
	p, s, ok := strings.Cut(tok, ".")
	if !ok {
		return ErrInvalid
	}
	payload, ok := canonical(p)
	if !ok {
		return ErrInvalid
	}
	sig, ok := canonical(s)
	if !ok || !hmac.Equal(sig, c.mac(payload)) {
		return ErrInvalid
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return ErrInvalid
	}
	return nil
}

// canonical decodes s only if s is exactly how Seal spells those bytes: the
// base64 decoder alone would also take CR/LF anywhere and non-zero trailing
// bits, so one token would have many spellings and an edit could go unseen.
func canonical(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}

func (c *Codec) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte("gpuaas-cursor-v1\x00"))
	h.Write(payload)
	return h.Sum(nil)
}
