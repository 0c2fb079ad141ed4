package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

func tooLarge() error {
	e := artifact.Invalid("body_too_large", "", "request body exceeds 64 KiB")
	e.Status = http.StatusRequestEntityTooLarge
	return e
}

// rawBody returns the request body bytes, decoding base64 when the gateway did.
func rawBody(body string, b64 bool) ([]byte, error) {
	if !b64 {
		if len(body) > MaxBody {
			return nil, tooLarge()
		}
		return []byte(body), nil
	}
	if base64.StdEncoding.DecodedLen(len(body)) > MaxBody+3 {
		return nil, tooLarge()
	}
	b, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, artifact.Invalid("malformed_json", "", "request body is not valid base64")
	}
	if len(b) > MaxBody {
		return nil, tooLarge()
	}
	return b, nil
}

// jsonFields lists the exact JSON names of a struct's fields.
func jsonFields(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	out := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out[name] = true
	}
	return out
}

// decodeStrict fills dst (a pointer to a struct of *string fields) from a
// JSON object, refusing anything a lenient decoder would let through: other
// top-level values, unknown, duplicate or case-variant names, non-string
// values, and data after the object.
func decodeStrict(body []byte, dst any) error {
	known := jsonFields(dst)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return malformed()
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return artifact.Invalid("malformed_json", "", "request body must be a JSON object")
	}
	values := map[string]*string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformed()
		}
		name, _ := tok.(string)
		if !known[name] {
			return artifact.Invalid("unknown_field", name, "unknown field "+quoteField(name)+"; lifecycle_state, trust_state, ids and other server-owned fields cannot be set")
		}
		if _, dup := values[name]; dup {
			return artifact.Invalid("duplicate_field", name, "field "+quoteField(name)+" appears more than once")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return malformed()
		}
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			return artifact.Invalid(artifact.ReasonInvalidField, name, "field "+quoteField(name)+" must be a string")
		}
		values[name] = s
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return malformed()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return artifact.Invalid("trailing_data", "", "request body has data after the JSON object")
	}
	rv := reflect.ValueOf(dst).Elem()
	for i := range rv.NumField() {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		if s := values[name]; s != nil {
			rv.Field(i).Set(reflect.ValueOf(s))
		}
	}
	return nil
}

func malformed() error {
	return artifact.Invalid("malformed_json", "", "request body is not valid JSON")
}

func quoteField(name string) string {
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	b, _ := json.Marshal(name)
	return string(b)
}
