// Package ddbfix puts DynamoDB's own Query semantics in front of minidyn
// where the two differ and the difference would hide a defect: a filter on
// a key attribute is refused, and a filtered Query with a Limit evaluates
// Limit items of the queried partition (not of the whole table) and says
// where it stopped. See doc/adr/0003-local-engine-quirks.md.
package ddbfix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const queryTarget = "DynamoDB_20120810.Query"

// Keys maps an index name ("" for the table) to its key attribute names,
// partition key first.
type Keys map[string][]string

// KeysOf reads the key attributes of a table and its indexes.
func KeysOf(in *dynamodb.CreateTableInput) Keys {
	names := func(ks []types.KeySchemaElement) []string {
		out := make([]string, 0, len(ks))
		for _, k := range ks {
			out = append(out, aws.ToString(k.AttributeName))
		}
		return out
	}
	keys := Keys{"": names(in.KeySchema)}
	for _, g := range in.GlobalSecondaryIndexes {
		keys[aws.ToString(g.IndexName)] = names(g.KeySchema)
	}
	for _, l := range in.LocalSecondaryIndexes {
		keys[aws.ToString(l.IndexName)] = names(l.KeySchema)
	}
	return keys
}

var filterToken = regexp.MustCompile(`#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*`)

type query struct {
	IndexName                string
	FilterExpression         string
	ExpressionAttributeNames map[string]string
	Limit                    *int64
}

// Wrap returns next (minidyn) with DynamoDB's Query semantics for the
// table whose keys are keys.
func Wrap(next http.Handler, keys Keys) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != queryTarget {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var q query
		var raw map[string]json.RawMessage
		if json.Unmarshal(body, &q) != nil || json.Unmarshal(body, &raw) != nil {
			replay(next, w, r, body)
			return
		}
		for _, tok := range filterToken.FindAllString(q.FilterExpression, -1) {
			if n, ok := q.ExpressionAttributeNames[tok]; ok {
				tok = n
			}
			if slices.Contains(keys[q.IndexName], tok) {
				fail(w, "Filter Expression can only contain non-primary key attributes: Primary key attribute: "+tok)
				return
			}
		}
		if q.FilterExpression == "" || q.Limit == nil {
			replay(next, w, r, body)
			return
		}
		filteredPage(next, w, r, raw, int(*q.Limit), keyNames(keys, q.IndexName))
	})
}

// keyNames are the attributes of a LastEvaluatedKey: the table's keys and,
// on an index, the index's.
func keyNames(keys Keys, index string) []string {
	out := slices.Clone(keys[""])
	if index != "" {
		for _, k := range keys[index] {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

type page struct {
	Items            []map[string]json.RawMessage `json:"Items"`
	Count            int                          `json:"Count"`
	ScannedCount     int                          `json:"ScannedCount"`
	LastEvaluatedKey map[string]json.RawMessage   `json:"LastEvaluatedKey,omitempty"`
}

// filteredPage answers a filtered Query with a Limit as DynamoDB does: it
// evaluates the first limit items of the key condition (from the start
// key), returns those of them the filter matches, and sets
// LastEvaluatedKey to the last one evaluated when more remain. minidyn
// counts items of every partition against the limit instead. Two engine
// reads: the key condition alone, and the filter, both without a limit.
func filteredPage(next http.Handler, w http.ResponseWriter, r *http.Request, in map[string]json.RawMessage, limit int, keyAttrs []string) {
	unlimited := func(withFilter bool) (*page, *httptest.ResponseRecorder) {
		q := map[string]json.RawMessage{}
		for k, v := range in {
			q[k] = v
		}
		delete(q, "Limit")
		if !withFilter {
			delete(q, "FilterExpression")
			// Names and values only the filter used would be refused as unused.
			for _, f := range []string{"ExpressionAttributeNames", "ExpressionAttributeValues"} {
				if m, ok := q[f]; ok {
					q[f] = used(m, in)
				}
			}
		}
		body, _ := json.Marshal(q)
		rec := httptest.NewRecorder()
		req := r.Clone(r.Context())
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
		next.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return nil, rec
		}
		var p page
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			return nil, rec
		}
		return &p, nil
	}
	all, failed := unlimited(false)
	if failed == nil {
		var matched *page
		if matched, failed = unlimited(true); failed == nil {
			window := all.Items[:min(limit, len(all.Items))]
			in := map[string]bool{}
			for _, it := range matched.Items {
				in[identity(it, keyAttrs)] = true
			}
			out := page{Items: []map[string]json.RawMessage{}, ScannedCount: len(window)}
			for _, it := range window {
				if in[identity(it, keyAttrs)] {
					out.Items = append(out.Items, it)
				}
			}
			out.Count = len(out.Items)
			if len(all.Items) > limit {
				out.LastEvaluatedKey = map[string]json.RawMessage{}
				for _, k := range keyAttrs {
					out.LastEvaluatedKey[k] = window[len(window)-1][k]
				}
			}
			b, _ := json.Marshal(out)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			_, _ = w.Write(b)
			return
		}
	}
	for k, vs := range failed.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(failed.Code)
	_, _ = w.Write(failed.Body.Bytes())
}

var placeholder = regexp.MustCompile(`[#:][A-Za-z0-9_]+`)

// used keeps the entries of an ExpressionAttributeNames or -Values map that
// the key condition (and projection) use.
func used(m json.RawMessage, in map[string]json.RawMessage) json.RawMessage {
	var all map[string]json.RawMessage
	if json.Unmarshal(m, &all) != nil {
		return m
	}
	var text string
	for _, f := range []string{"KeyConditionExpression", "ProjectionExpression"} {
		var s string
		_ = json.Unmarshal(in[f], &s)
		text += " " + s
	}
	kept := map[string]json.RawMessage{}
	for _, tok := range placeholder.FindAllString(text, -1) {
		if v, ok := all[tok]; ok {
			kept[tok] = v
		}
	}
	b, _ := json.Marshal(kept)
	return b
}

func identity(item map[string]json.RawMessage, keyAttrs []string) string {
	var b bytes.Buffer
	for _, k := range keyAttrs {
		b.Write(item[k])
		b.WriteByte(0)
	}
	return b.String()
}

func replay(next http.Handler, w http.ResponseWriter, r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	next.ServeHTTP(w, r)
}

func fail(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"__type":"com.amazon.coral.validation#ValidationException","message":%q}`, msg)
}
