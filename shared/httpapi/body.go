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

// maxDepth bounds JSON nesting; no request body needs more than a few levels.
const maxDepth = 16

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

// jsonName is a struct field's JSON name ("" for fields JSON ignores).
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

// decodeStrict fills dst (a pointer to the route's input struct) from one
// JSON object, refusing what a lenient decoder lets through: names that are
// unknown, duplicated or differ only in case (Go matches them anyway), nesting
// beyond maxDepth, values of the wrong type, and data after the object.
func decodeStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return malformed()
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return artifact.Invalid("malformed_json", "", "request body must be a JSON object")
	}
	if err := checkObject(dec, reflect.TypeOf(dst).Elem(), "", 1); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return artifact.Invalid("trailing_data", "", "request body has data after the JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return artifact.Invalid(artifact.ReasonInvalidField, te.Field, "field "+quoteField(te.Field)+" has the wrong type")
		}
		return malformed()
	}
	return nil
}

// checkObject walks an object whose '{' was read, against struct type t.
func checkObject(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return artifact.Invalid("malformed_json", "", "request body is nested too deeply")
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := map[string]reflect.Type{}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			if n := jsonName(t.Field(i)); n != "" {
				fields[n] = t.Field(i).Type
			}
		}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformed()
		}
		name, _ := tok.(string)
		field := name
		if path != "" {
			field = path + "." + name
		}
		ft, known := fields[name]
		if t.Kind() == reflect.Map {
			ft, known = t.Elem(), true
		}
		if !known {
			return artifact.Invalid("unknown_field", field, "unknown field "+quoteField(field)+"; lifecycle_state, trust_state, ids and other server-owned fields cannot be set")
		}
		if seen[name] {
			return artifact.Invalid("duplicate_field", field, "field "+quoteField(field)+" appears more than once")
		}
		seen[name] = true
		if err := checkValue(dec, ft, field, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return malformed()
	}
	return nil
}

// checkValue walks one value; objects and arrays are checked against t.
func checkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return malformed()
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is checked when decoding
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch d {
	case '{':
		if t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
			return artifact.Invalid(artifact.ReasonInvalidField, path, "field "+quoteField(path)+" has the wrong type")
		}
		return checkObject(dec, t, path, depth+1)
	case '[':
		if t.Kind() != reflect.Slice || depth+1 > maxDepth {
			return artifact.Invalid(artifact.ReasonInvalidField, path, "field "+quoteField(path)+" has the wrong type")
		}
		for dec.More() {
			if err := checkValue(dec, t.Elem(), path, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return malformed()
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
