package artifact

import (
	"encoding/json"
	"time"
)

// TimeFormat is how the API writes timestamps: UTC, RFC 3339 with exactly
// three fractional digits (the service keeps milliseconds), so that every
// timestamp has one width and sorts as text. encoding/json's RFC3339Nano
// drops trailing zeros ("…:36.9Z" next to "…:36.95Z").
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Timestamp is a time.Time that encodes in TimeFormat.
type Timestamp time.Time

// Equal reports whether t and u are the same instant (and lets go-cmp
// compare timestamps).
func (t Timestamp) Equal(u Timestamp) bool { return time.Time(t).Equal(time.Time(u)) }

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(TimeFormat) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler (any RFC 3339 time).
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	*t = Timestamp(p)
	return err
}

// MarshalJSON writes the artifact with its timestamps in TimeFormat.
func (a Artifact) MarshalJSON() ([]byte, error) {
	type fields Artifact
	return json.Marshal(struct {
		fields
		CreatedAt Timestamp `json:"created_at"`
		UpdatedAt Timestamp `json:"updated_at"`
	}{fields(a), Timestamp(a.CreatedAt), Timestamp(a.UpdatedAt)})
}

// MarshalJSON writes the intent with its timestamps in TimeFormat.
func (p PublishIntent) MarshalJSON() ([]byte, error) {
	type fields PublishIntent
	return json.Marshal(struct {
		fields
		CreatedAt Timestamp `json:"created_at"`
		ExpiresAt Timestamp `json:"expires_at"`
	}{fields(p), Timestamp(p.CreatedAt), Timestamp(p.ExpiresAt)})
}
