package cursor_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/cursor"
)

type pos struct {
	P string `json:"p"`
	A string `json:"a"`
}

func TestSealOpen(t *testing.T) {
	c, err := cursor.New([]byte(strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Seal(pos{P: "proj", A: "art_1"})
	if err != nil {
		t.Fatal(err)
	}
	var got pos
	if err := c.Open(tok, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pos{P: "proj", A: "art_1"}, got); diff != "" {
		t.Fatal(diff)
	}
	other, _ := cursor.New([]byte(strings.Repeat("o", 32)))
	flip := []byte(tok)
	flip[0] ^= 1
	for name, bad := range map[string]string{
		"empty": "", "no dot": "abc", "flipped payload": string(flip), "signature cut": tok[:len(tok)-2],
		"payload only": strings.Split(tok, ".")[0] + ".", "huge": strings.Repeat("a", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Open(bad, &got); err != cursor.ErrInvalid {
				t.Fatalf("Open(%q) = %v", bad, err)
			}
		})
	}
	if err := other.Open(tok, &got); err != cursor.ErrInvalid {
		t.Fatalf("a token opened under another key: %v", err)
	}
	if _, err := cursor.New([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}
