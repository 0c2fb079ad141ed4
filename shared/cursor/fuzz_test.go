package cursor_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gpuaas/app-artifacts/shared/cursor"
)

// position has the shape of the list cursor the service seals.
type position struct {
	V       int    `json:"v"`
	Project string `json:"p"`
	Org     string `json:"o"`
	Filter  string `json:"f"`
	After   string `json:"a"`
}

func fuzzCodec(t testing.TB) *cursor.Codec {
	c, err := cursor.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sealedPayload returns the payload bytes tok carries, decoded the way a
// lenient reader would.
func sealedPayload(tok string) []byte {
	p, _, _ := strings.Cut(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(p)
	return b
}

// canonical reports whether tok is, byte for byte, what c.Seal gives for the
// payload tok carries. Anything Open accepts must be: any other spelling is
// a token the codec did not seal.
func canonical(c *cursor.Codec, tok string) bool {
	payload := sealedPayload(tok)
	if !json.Valid(payload) {
		return false
	}
	want, err := c.Seal(json.RawMessage(payload))
	return err == nil && want == tok
}

// FuzzOpen: arbitrary strings never panic Open, and none is accepted (the
// key is not guessable: acceptance means Open let through something Seal
// never produced).
func FuzzOpen(f *testing.F) {
	c := fuzzCodec(f)
	good, err := c.Seal(position{V: 1, Project: "proj-alpha", Org: "org-acme", Filter: "abc", After: "art_01"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", ".", "..", "e30.", ".e30", "e30.AAAA", good + ".", "." + good, strings.Repeat("A", 2049), good[:len(good)/2], "eyJ2IjoxfQ.!!!!"} {
		f.Add(s)
	}
	other, _ := cursor.New([]byte(strings.Repeat("x", 32)))
	foreign, _ := other.Seal(position{V: 1, Project: "proj-alpha"})
	f.Add(foreign)
	f.Fuzz(func(t *testing.T, tok string) {
		var v position
		err := c.Open(tok, &v)
		if err == nil && !canonical(c, tok) {
			t.Fatalf("Open accepted %q, which this codec did not seal", tok)
		}
		if err != nil && err != cursor.ErrInvalid {
			t.Fatalf("Open(%q) = %v, want cursor.ErrInvalid", tok, err)
		}
	})
}

// FuzzTamper seals a cursor, changes it (flips bits of one byte, inserts
// bytes, or truncates), and checks Open refuses every token other than the
// one sealed.
func FuzzTamper(f *testing.F) {
	f.Add("proj-alpha", "org-acme", "art_01JABCDEF", uint16(0), byte(1), uint8(0))
	f.Add("proj-alpha", "org-acme", "art_01JABCDEF", uint16(12), byte(0x20), uint8(0))
	f.Add("p", "o", "", uint16(3), byte('.'), uint8(1))
	f.Add("p", "o", "a", uint16(7), byte(0), uint8(2))
	f.Add("ünïcode", "\x00", strings.Repeat("z", 300), uint16(999), byte(0xff), uint8(0))
	// Flipping the lowest bit of the last character of the signature: base64
	// ignores trailing bits a lenient decoder does not check.
	f.Add("proj-alpha", "org-acme", "art_01JABCDEF", uint16(0xffff), byte(1), uint8(3))
	// A line break inside the token: base64 decoders skip \r and \n.
	f.Add("proj-alpha", "org-acme", "art_01JABCDEF", uint16(5), byte('\n'), uint8(1))
	c := fuzzCodec(f)
	f.Fuzz(func(t *testing.T, project, org, after string, pos uint16, b byte, mode uint8) {
		in := position{V: 1, Project: project, Org: org, Filter: "f", After: after}
		tok, err := c.Seal(in)
		if err != nil {
			t.Fatal(err)
		}
		// What JSON can carry: invalid UTF-8 comes back as U+FFFD.
		if err := json.Unmarshal(sealedPayload(tok), &in); err != nil {
			t.Fatal(err)
		}
		var out position
		if err := c.Open(tok, &out); err != nil || out != in {
			if len(tok) > 2048 {
				return // too long to be a cursor: refused whole
			}
			t.Fatalf("Open(Seal(%+v)) = %+v, %v", in, out, err)
		}
		i := int(pos) % len(tok)
		var bad string
		switch mode % 4 {
		case 0: // flip bits of one byte
			if b == 0 {
				b = 1
			}
			bad = tok[:i] + string([]byte{tok[i] ^ b}) + tok[i+1:]
		case 1: // insert a byte
			bad = tok[:i] + string([]byte{b}) + tok[i:]
		case 2: // truncate
			bad = tok[:i]
		case 3: // flip bits of the last byte
			if b == 0 {
				b = 1
			}
			bad = tok[:len(tok)-1] + string([]byte{tok[len(tok)-1] ^ b})
		}
		if bad == tok {
			return
		}
		var got position
		if err := c.Open(bad, &got); err == nil {
			t.Fatalf("tampered token %q (from %q) opened to %+v", bad, tok, got)
		}
	})
}
