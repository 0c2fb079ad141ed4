package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrInvalidPattern is what every ParsePattern error matches with errors.Is.
var ErrInvalidPattern = errors.New("invalid event pattern")

// patternError carries EventBridge's InvalidEventPatternException wording.
type patternError struct{ reason string }

func (e *patternError) Error() string { return "Event pattern is not valid. Reason: " + e.reason }

func (e *patternError) Is(target error) bool { return target == ErrInvalidPattern }

func invalid(format string, args ...any) error {
	return &patternError{reason: fmt.Sprintf(format, args...)}
}

// numericLimit bounds numeric operands as EventBridge does: numeric matching
// works on values between -5.0e9 and +5.0e9 inclusive ("Content filtering in
// Amazon EventBridge event patterns", numeric matching).
const numericLimit = 5.0e9

// Pattern is a parsed EventBridge event pattern. It is immutable and safe
// for concurrent use.
type Pattern struct {
	root *object
	src  string
}

// object is one JSON object of a pattern: all of its fields must match, and
// for each $or in it at least one of the alternatives.
type object struct {
	fields []field
	ors    [][]*object
}

// field is one key of a pattern object: either a nested object or a leaf
// array of alternative matchers.
type field struct {
	name   string
	obj    *object
	values []matcher
}

// matcher is one element of a leaf array. exists is set for {"exists": ...};
// otherwise match decides one scalar event value.
type matcher struct {
	exists *bool
	match  func(v any) bool
}

// ParsePattern parses an EventBridge event pattern and rejects the malformed
// patterns EventBridge rejects (PutRule's InvalidEventPatternException): a
// pattern that is not a non-empty JSON object, a field whose value is neither
// an object nor an array (for example {"source": "aws.ecr"}), empty objects
// and arrays, nested arrays, unknown operators or operators with an argument
// of the wrong type, mixed or empty anything-but lists, anything-but over
// true, false or null, malformed numeric ranges or operands beyond ±5e9,
// invalid CIDR blocks, malformed wildcards and $or with fewer than two
// objects. A key repeated within one object keeps its last value, as the
// documentation says. Errors match ErrInvalidPattern.
//
// Operators: exact strings, numbers, true, false, null; prefix, suffix,
// equals-ignore-case (also inside prefix and suffix); wildcard; anything-but
// with a string, a number, a list of strings or of numbers, or with prefix,
// suffix, equals-ignore-case or wildcard; numeric (=, <, <=, >, >= and
// two-sided ranges); cidr (IPv4 and IPv6); exists; $or at any level.
func ParsePattern(raw []byte) (*Pattern, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return nil, invalid("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("malformed JSON: data after the pattern object")
	}
	m, ok := top.(map[string]any)
	if !ok {
		return nil, invalid("Filter is not an object")
	}
	root, err := parseObject(m)
	if err != nil {
		return nil, err
	}
	return &Pattern{root: root, src: string(raw)}, nil
}

// String returns the pattern's source text.
func (p *Pattern) String() string {
	if p == nil {
		return ""
	}
	return p.src
}

func parseObject(m map[string]any) (*object, error) {
	if len(m) == 0 {
		return nil, invalid("Empty objects are not allowed")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	o := &object{}
	for _, k := range keys {
		v := m[k]
		if k == "$or" {
			alts, err := parseOr(v)
			if err != nil {
				return nil, err
			}
			o.ors = append(o.ors, alts)
			continue
		}
		switch t := v.(type) {
		case map[string]any:
			child, err := parseObject(t)
			if err != nil {
				return nil, err
			}
			o.fields = append(o.fields, field{name: k, obj: child})
		case []any:
			values, err := parseValues(t)
			if err != nil {
				return nil, err
			}
			o.fields = append(o.fields, field{name: k, values: values})
		default:
			return nil, invalid("%q must be an object or an array", k)
		}
	}
	return o, nil
}

func parseOr(v any) ([]*object, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, invalid("It must be an Array followed with $or.")
	}
	var alts []*object
	for _, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, invalid("Only JSON object is allowed in array of $or relationship.")
		}
		alt, err := parseObject(m)
		if err != nil {
			return nil, err
		}
		alts = append(alts, alt)
	}
	if len(alts) < 2 {
		return nil, invalid("There must have at least 2 Objects in $or relationship.")
	}
	return alts, nil
}

func parseValues(arr []any) ([]matcher, error) {
	if len(arr) == 0 {
		return nil, invalid("Empty arrays are not allowed")
	}
	out := make([]matcher, 0, len(arr))
	for _, e := range arr {
		switch t := e.(type) {
		case string:
			out = append(out, matcher{match: equalString(t)})
		case json.Number:
			out = append(out, matcher{match: equalNumber(t)})
		case bool:
			out = append(out, matcher{match: func(v any) bool { b, ok := v.(bool); return ok && b == t }})
		case nil:
			out = append(out, matcher{match: func(v any) bool { return v == nil }})
		case map[string]any:
			m, err := parseExpression(t)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		default:
			return nil, invalid("Match value must be String, number, true, false, or null")
		}
	}
	return out, nil
}

func parseExpression(m map[string]any) (matcher, error) {
	if len(m) == 0 {
		return matcher{}, invalid("Match expression name not found")
	}
	if len(m) > 1 {
		return matcher{}, invalid("Only one key allowed in match expression")
	}
	var op string
	var arg any
	for op, arg = range m {
	}
	switch op {
	case "prefix", "suffix":
		f, err := parseAffix(op, arg)
		if err != nil {
			return matcher{}, err
		}
		return matcher{match: f}, nil
	case "equals-ignore-case":
		s, ok := arg.(string)
		if !ok {
			return matcher{}, invalid("equals-ignore-case match pattern must be a string")
		}
		return matcher{match: equalFold(s)}, nil
	case "wildcard":
		s, ok := arg.(string)
		if !ok {
			return matcher{}, invalid("wildcard match pattern must be a string")
		}
		f, err := wildcard(s)
		if err != nil {
			return matcher{}, err
		}
		return matcher{match: f}, nil
	case "anything-but":
		f, err := parseAnythingBut(arg)
		if err != nil {
			return matcher{}, err
		}
		return matcher{match: f}, nil
	case "numeric":
		arr, ok := arg.([]any)
		if !ok {
			return matcher{}, invalid("Value of numeric must be an array.")
		}
		f, err := parseNumeric(arr)
		if err != nil {
			return matcher{}, err
		}
		return matcher{match: f}, nil
	case "exists":
		b, ok := arg.(bool)
		if !ok {
			return matcher{}, invalid("exists match pattern must be either true or false.")
		}
		return matcher{exists: &b}, nil
	case "cidr":
		s, ok := arg.(string)
		if !ok {
			return matcher{}, invalid("cidr match pattern must be a string")
		}
		f, err := cidr(s)
		if err != nil {
			return matcher{}, err
		}
		return matcher{match: f}, nil
	default:
		return matcher{}, invalid("Unrecognized match type %s", op)
	}
}

// parseAffix handles {"prefix": "x"}, {"prefix": {"equals-ignore-case": "x"}}
// and the same for suffix.
func parseAffix(op string, arg any) (func(any) bool, error) {
	fold := false
	if m, ok := arg.(map[string]any); ok {
		if len(m) != 1 {
			return nil, invalid("Only one key allowed in match expression")
		}
		inner, ok := m["equals-ignore-case"]
		if !ok {
			return nil, invalid("Unsupported %s pattern", op)
		}
		arg, fold = inner, true
	}
	s, ok := arg.(string)
	if !ok {
		return nil, invalid("%s match pattern must be a string", op)
	}
	switch {
	case op == "prefix" && fold:
		return hasPrefixFold(s), nil
	case op == "prefix":
		return hasPrefix(s), nil
	case fold:
		return hasSuffixFold(s), nil
	default:
		return hasSuffix(s), nil
	}
}

// parseAnythingBut builds "present and not <inner>".
func parseAnythingBut(arg any) (func(any) bool, error) {
	inner, err := anythingButInner(arg)
	if err != nil {
		return nil, err
	}
	return func(v any) bool { return !inner(v) }, nil
}

func anythingButInner(arg any) (func(any) bool, error) {
	switch t := arg.(type) {
	case string:
		return equalString(t), nil
	case json.Number:
		if _, err := numericOperand(t); err != nil {
			return nil, err
		}
		return equalNumber(t), nil
	case []any:
		var strs []string
		var nums []json.Number
		for _, e := range t {
			switch x := e.(type) {
			case string:
				strs = append(strs, x)
			case json.Number:
				if _, err := numericOperand(x); err != nil {
					return nil, err
				}
				nums = append(nums, x)
			default:
				return nil, invalid("Inside anything but list, start|null|boolean is not supported.")
			}
		}
		if (len(strs) > 0) == (len(nums) > 0) {
			return nil, invalid("Inside anything but list, either all values are number or string, mixed type is not supported")
		}
		if len(strs) > 0 {
			return anyOf(strs, equalString), nil
		}
		return anyOf(nums, equalNumber), nil
	case map[string]any:
		if len(t) != 1 {
			return nil, invalid("Only one key allowed in match expression")
		}
		var op string
		var inner any
		for op, inner = range t {
		}
		switch op {
		case "prefix", "suffix":
			s, ok := inner.(string)
			if !ok {
				return nil, invalid("prefix/suffix match pattern must be a string")
			}
			if s == "" {
				return nil, invalid("Null prefix/suffix not allowed")
			}
			if op == "prefix" {
				return hasPrefix(s), nil
			}
			return hasSuffix(s), nil
		case "equals-ignore-case", "wildcard":
			var list []string
			switch x := inner.(type) {
			case string:
				list = []string{x}
			case []any:
				for _, e := range x {
					s, ok := e.(string)
					if !ok {
						return nil, invalid("Inside anything-but/%s list, number|start|null|boolean is not supported.", op)
					}
					list = append(list, s)
				}
			}
			if len(list) == 0 {
				return nil, invalid("Value of anything-but/%s must be a string or a non-empty list of strings", op)
			}
			if op == "equals-ignore-case" {
				return anyOf(list, equalFold), nil
			}
			fs := make([]func(any) bool, 0, len(list))
			for _, s := range list {
				f, err := wildcard(s)
				if err != nil {
					return nil, err
				}
				fs = append(fs, f)
			}
			return anyOf(fs, func(f func(any) bool) func(any) bool { return f }), nil
		default:
			return nil, invalid("Unsupported anything-but pattern: %s", op)
		}
	default:
		return nil, invalid("Value of anything-but must be an array or single string/number value.")
	}
}

func anyOf[T any](xs []T, build func(T) func(any) bool) func(any) bool {
	fs := make([]func(any) bool, len(xs))
	for i, x := range xs {
		fs[i] = build(x)
	}
	return func(v any) bool {
		for _, f := range fs {
			if f(v) {
				return true
			}
		}
		return false
	}
}

func parseNumeric(arr []any) (func(any) bool, error) {
	if len(arr) != 2 && len(arr) != 4 {
		return nil, invalid("Too many elements in numeric expression")
	}
	op1, ok := arr[0].(string)
	if !ok {
		return nil, invalid("Invalid member in numeric match: %v", arr[0])
	}
	v1, err := numericValue(op1, arr[1])
	if err != nil {
		return nil, err
	}
	switch op1 {
	case "=":
		if len(arr) != 2 {
			return nil, invalid("Too many elements in numeric expression")
		}
		return numberIn(func(f float64) bool { return f == v1 }), nil
	case "<", "<=":
		if len(arr) != 2 {
			return nil, invalid("Too many elements in numeric expression")
		}
		if op1 == "<" {
			return numberIn(func(f float64) bool { return f < v1 }), nil
		}
		return numberIn(func(f float64) bool { return f <= v1 }), nil
	case ">", ">=":
		lowOK := func(f float64) bool { return f > v1 }
		if op1 == ">=" {
			lowOK = func(f float64) bool { return f >= v1 }
		}
		if len(arr) == 2 {
			return numberIn(lowOK), nil
		}
		op2, ok := arr[2].(string)
		if !ok || (op2 != "<" && op2 != "<=") {
			return nil, invalid("Bad numeric range operator: %v", arr[2])
		}
		v2, err := numericValue(op2, arr[3])
		if err != nil {
			return nil, err
		}
		if v1 >= v2 {
			return nil, invalid("Bottom must be less than top")
		}
		if op2 == "<" {
			return numberIn(func(f float64) bool { return lowOK(f) && f < v2 }), nil
		}
		return numberIn(func(f float64) bool { return lowOK(f) && f <= v2 }), nil
	default:
		return nil, invalid("Unrecognized numeric range operator: %s", op1)
	}
}

func numericValue(op string, v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, invalid("Value of %s must be numeric", op)
	}
	return numericOperand(n)
}

func numericOperand(n json.Number) (float64, error) {
	f, err := n.Float64()
	if err != nil || math.Abs(f) > numericLimit {
		return 0, invalid("Value %s is out of the numeric range -5.0e9..5.0e9", n)
	}
	return f, nil
}

// numberIn matches event values that are JSON numbers within the numeric
// range and satisfy ok.
func numberIn(ok func(float64) bool) func(any) bool {
	return func(v any) bool {
		n, isNum := v.(json.Number)
		if !isNum {
			return false
		}
		f, err := n.Float64()
		if err != nil || math.Abs(f) > numericLimit {
			return false
		}
		return ok(f)
	}
}

func equalString(s string) func(any) bool {
	return func(v any) bool { x, ok := v.(string); return ok && x == s }
}

// equalNumber matches a JSON number by its text or, within the numeric
// range, by value (so 3.018e2 matches 301.8).
func equalNumber(n json.Number) func(any) bool {
	pf, err := n.Float64()
	comparable := err == nil && math.Abs(pf) <= numericLimit
	return func(v any) bool {
		x, ok := v.(json.Number)
		if !ok {
			return false
		}
		if x == n {
			return true
		}
		if !comparable {
			return false
		}
		xf, err := x.Float64()
		return err == nil && math.Abs(xf) <= numericLimit && xf == pf
	}
}

func equalFold(s string) func(any) bool {
	return func(v any) bool { x, ok := v.(string); return ok && strings.EqualFold(x, s) }
}

func hasPrefix(p string) func(any) bool {
	return func(v any) bool { x, ok := v.(string); return ok && strings.HasPrefix(x, p) }
}

func hasSuffix(p string) func(any) bool {
	return func(v any) bool { x, ok := v.(string); return ok && strings.HasSuffix(x, p) }
}

func hasPrefixFold(p string) func(any) bool {
	n := utf8.RuneCountInString(p)
	return func(v any) bool {
		x, ok := v.(string)
		if !ok || utf8.RuneCountInString(x) < n {
			return false
		}
		end := 0
		for i := 0; i < n; i++ {
			_, size := utf8.DecodeRuneInString(x[end:])
			end += size
		}
		return strings.EqualFold(x[:end], p)
	}
}

func hasSuffixFold(p string) func(any) bool {
	n := utf8.RuneCountInString(p)
	return func(v any) bool {
		x, ok := v.(string)
		if !ok || utf8.RuneCountInString(x) < n {
			return false
		}
		start := len(x)
		for i := 0; i < n; i++ {
			_, size := utf8.DecodeLastRuneInString(x[:start])
			start -= size
		}
		return strings.EqualFold(x[start:], p)
	}
}

// wildcard compiles a pattern where * matches any run of characters, \* a
// literal star and \\ a literal backslash; consecutive stars are rejected.
func wildcard(p string) (func(any) bool, error) {
	var segs []string
	var cur strings.Builder
	prevStar := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '\\':
			if i+1 >= len(p) || (p[i+1] != '*' && p[i+1] != '\\') {
				return nil, invalid("Invalid escape at position %d in wildcard %q", i, p)
			}
			cur.WriteByte(p[i+1])
			i++
			prevStar = false
		case '*':
			if prevStar {
				return nil, invalid("Consecutive wildcard characters at pos %d", i)
			}
			segs = append(segs, cur.String())
			cur.Reset()
			prevStar = true
		default:
			cur.WriteByte(c)
			prevStar = false
		}
	}
	segs = append(segs, cur.String())
	return func(v any) bool {
		x, ok := v.(string)
		return ok && globMatch(segs, x)
	}, nil
}

// globMatch reports whether s matches literal segments separated by stars.
func globMatch(segs []string, s string) bool {
	if len(segs) == 1 {
		return s == segs[0]
	}
	first, last := segs[0], segs[len(segs)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	mid := s[len(first) : len(s)-len(last)]
	for _, seg := range segs[1 : len(segs)-1] {
		i := strings.Index(mid, seg)
		if i < 0 {
			return false
		}
		mid = mid[i+len(seg):]
	}
	return true
}

func cidr(s string) (func(any) bool, error) {
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, invalid("Nonstandard IP address: %s", s)
	}
	prefix = prefix.Masked()
	return func(v any) bool {
		x, ok := v.(string)
		if !ok {
			return false
		}
		addr, err := netip.ParseAddr(x)
		if err != nil {
			return false
		}
		return prefix.Contains(addr.Unmap())
	}, nil
}

// Matches reports whether the event, a full EventBridge envelope as JSON
// (version, id, detail-type, source, account, time, region, resources,
// detail), matches the pattern. Malformed JSON or a non-object never matches.
func (p *Pattern) Matches(event []byte) bool {
	if p == nil || p.root == nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	return p.root.matchFields(m)
}

// matchObject applies a pattern object to an event value: an event array
// matches when one of its elements does (so the fields of one pattern object
// match within one array element), an object by its fields, anything else as
// an object with no fields.
func (o *object) matchObject(v any) bool {
	switch t := v.(type) {
	case []any:
		if len(t) == 0 {
			return o.matchFields(nil)
		}
		for _, e := range t {
			if o.matchObject(e) {
				return true
			}
		}
		return false
	case map[string]any:
		return o.matchFields(t)
	default:
		return o.matchFields(nil)
	}
}

func (o *object) matchFields(m map[string]any) bool {
	for _, f := range o.fields {
		v, present := m[f.name]
		if f.obj != nil {
			if !f.obj.matchObject(v) {
				return false
			}
			continue
		}
		if !matchLeaf(f.values, v, present) {
			return false
		}
	}
	for _, alts := range o.ors {
		if !slices.ContainsFunc(alts, func(a *object) bool { return a.matchFields(m) }) {
			return false
		}
	}
	return true
}

// matchLeaf applies a leaf array (alternatives) to the event's value there:
// its scalar values, flattening arrays; objects are not leaves.
func matchLeaf(ms []matcher, v any, present bool) bool {
	var vals []any
	if present {
		vals = leaves(v, nil)
	}
	for _, m := range ms {
		if m.exists != nil {
			if *m.exists == (len(vals) > 0) {
				return true
			}
			continue
		}
		for _, x := range vals {
			if m.match(x) {
				return true
			}
		}
	}
	return false
}

func leaves(v any, out []any) []any {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			out = leaves(e, out)
		}
	case map[string]any:
	default:
		out = append(out, t)
	}
	return out
}
