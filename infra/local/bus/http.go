package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// maxBody bounds a PutEvents request body: 256 KiB of entries can double
// when JSON-escaped inside Detail strings.
const maxBody = 4 << 20

const jsonContentType = "application/x-amz-json-1.1"

type putEventsInput struct {
	Entries []wireEntry `json:"Entries"`
}

type wireEntry struct {
	Source       string          `json:"Source"`
	DetailType   string          `json:"DetailType"`
	Detail       string          `json:"Detail"`
	EventBusName string          `json:"EventBusName"`
	Resources    []string        `json:"Resources"`
	Time         json.RawMessage `json:"Time"`
	TraceHeader  string          `json:"TraceHeader"`
}

type putEventsOutput struct {
	FailedEntryCount int           `json:"FailedEntryCount"`
	Entries          []resultEntry `json:"Entries"`
}

type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

// ServeHTTP serves PutEvents: POST / with X-Amz-Target AWSEvents.PutEvents
// and an AWS JSON 1.1 body. Signatures are not checked. Request-level
// failures answer 400 with an AWS JSON error (__type, message and the
// X-Amzn-ErrorType header) as EventBridge does; per-entry failures are in the
// 200 answer's Entries.
func (b *Bus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", newEventID())
	if r.URL.Path != "/" {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "no such resource: "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "UnknownOperationException", "only POST is served")
		return
	}
	if target := r.Header.Get("X-Amz-Target"); target != "AWSEvents.PutEvents" {
		writeError(w, http.StatusBadRequest, "UnknownOperationException",
			"the local event bus serves AWSEvents.PutEvents only, not "+strconv.Quote(target))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "reading the request body: "+err.Error())
		return
	}
	if len(body) > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "ValidationException", "Total size of the entries in the request is over the limit.")
		return
	}
	var in putEventsInput
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "malformed request body: "+err.Error())
		return
	}
	entries := make([]Entry, len(in.Entries))
	for i, we := range in.Entries {
		t, err := wireTime(we.Time)
		if err != nil {
			writeError(w, http.StatusBadRequest, "SerializationException", "Entries["+strconv.Itoa(i)+"].Time: "+err.Error())
			return
		}
		entries[i] = Entry{
			Source: we.Source, DetailType: we.DetailType, Detail: we.Detail, EventBusName: we.EventBusName,
			Resources: we.Resources, Time: t, TraceHeader: we.TraceHeader,
		}
	}
	if msg := requestError(entries); msg != "" {
		writeError(w, http.StatusBadRequest, "ValidationException", msg)
		return
	}
	results := b.put(r.Context(), entries, false)
	out := putEventsOutput{Entries: make([]resultEntry, len(results))}
	for i, res := range results {
		out.Entries[i] = resultEntry(res)
		if res.ErrorCode != "" {
			out.FailedEntryCount++
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// wireTime reads an AWS JSON timestamp: epoch seconds (possibly fractional),
// or an RFC 3339 string as some clients send.
func wireTime(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, err
		}
		return time.Parse(time.RFC3339Nano, s)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, errors.New("not a timestamp: " + string(raw))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	writeJSON(w, status, map[string]string{"__type": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"__type":"InternalException","message":"encoding the response"}`)
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
