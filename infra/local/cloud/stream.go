package cloud

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// StreamConsumer is a function subscribed to the stream (the publisher).
type StreamConsumer func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// StreamOptions mirror the template's DynamoDB event source mapping.
type StreamOptions struct {
	TableName     string
	Filter        func(record []byte) bool // the mapping's FilterCriteria; nil passes all
	Consumer      StreamConsumer
	BatchSize     int
	MaxRetries    int           // MaximumRetryAttempts
	Backoff       time.Duration // between retries of a failed batch
	DeadLetterDir string        // the OnFailure destination: a JSON line per record given up on
	Log           *slog.Logger
}

// Stream stands in for DynamoDB Streams (minidyn has none): a handler in
// front of the DynamoDB endpoint that serialises writes, reads the new image
// of every item a successful write touched, and delivers the records to the
// consumer in commit order, with the retry semantics of a Lambda event source
// mapping that reports batch item failures.
type Stream struct {
	next  http.Handler
	opts  StreamOptions
	mu    sync.Mutex // one write at a time: records follow commit order
	seq   int64
	queue chan events.DynamoDBEventRecord
	done  chan struct{}
	wg    sync.WaitGroup
	dlqMu sync.Mutex
	stop  context.CancelFunc
	// pending counts records emitted and not yet handled (delivered or dead-lettered).
	pending atomic.Int64
}

var writeOps = map[string]bool{"PutItem": true, "UpdateItem": true, "DeleteItem": true, "TransactWriteItems": true, "BatchWriteItem": true}

// NewStream wraps the DynamoDB handler next.
func NewStream(next http.Handler, opts StreamOptions) *Stream {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{next: next, opts: opts, queue: make(chan events.DynamoDBEventRecord, 10000), done: make(chan struct{}), stop: cancel}
	s.wg.Add(1)
	go s.deliver(ctx)
	return s
}

func (s *Stream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndex(op, ".")+1:]
	if !writeOps[op] || r.Method != http.MethodPost {
		s.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	keys := writtenKeys(op, body, s.opts.TableName)
	s.mu.Lock()
	defer s.mu.Unlock()
	existed := make([]bool, len(keys))
	for i, k := range keys {
		existed[i] = s.getItem(k) != nil
	}
	rec := httptest.NewRecorder()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	s.next.ServeHTTP(rec, r2)
	if rec.Code == http.StatusOK {
		now := time.Now()
		for i, k := range keys {
			img := s.getItem(k)
			if img == nil {
				continue // deleted: the publisher ignores REMOVE, so none is emitted
			}
			s.emit(k, img, existed[i], now)
		}
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// writtenKeys lists the primary keys a write request touches on table.
func writtenKeys(op string, body []byte, table string) []json.RawMessage {
	var req struct {
		TableName     string
		Item          map[string]json.RawMessage
		Key           json.RawMessage
		TransactItems []struct {
			Put *struct {
				TableName string
				Item      map[string]json.RawMessage
			}
			Update *struct {
				TableName string
				Key       json.RawMessage
			}
		}
		RequestItems map[string][]struct {
			PutRequest *struct{ Item map[string]json.RawMessage }
		}
	}
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	keyOfItem := func(item map[string]json.RawMessage) json.RawMessage {
		b, _ := json.Marshal(map[string]json.RawMessage{"PK": item["PK"], "SK": item["SK"]})
		return b
	}
	var keys []json.RawMessage
	switch op {
	case "PutItem":
		if req.TableName == table {
			keys = append(keys, keyOfItem(req.Item))
		}
	case "UpdateItem":
		if req.TableName == table {
			keys = append(keys, req.Key)
		}
	case "TransactWriteItems":
		for _, it := range req.TransactItems {
			switch {
			case it.Put != nil && it.Put.TableName == table:
				keys = append(keys, keyOfItem(it.Put.Item))
			case it.Update != nil && it.Update.TableName == table:
				keys = append(keys, it.Update.Key)
			}
		}
	case "BatchWriteItem":
		for _, w := range req.RequestItems[table] {
			if w.PutRequest != nil {
				keys = append(keys, keyOfItem(w.PutRequest.Item))
			}
		}
	}
	return keys
}

// getItem reads an item straight from the engine, in DynamoDB JSON.
func (s *Stream) getItem(key json.RawMessage) map[string]json.RawMessage {
	body, _ := json.Marshal(map[string]any{"TableName": s.opts.TableName, "Key": key, "ConsistentRead": true})
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, req)
	var out struct{ Item map[string]json.RawMessage }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || len(out.Item) == 0 {
		return nil
	}
	return out.Item
}

func (s *Stream) emit(key json.RawMessage, img map[string]json.RawMessage, existed bool, now time.Time) {
	s.seq++
	name := "INSERT"
	if existed {
		name = "MODIFY"
	}
	raw, _ := json.Marshal(map[string]any{
		"eventID": randomID(), "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
		"eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/" + s.opts.TableName + "/stream/local",
		"dynamodb": map[string]any{
			"ApproximateCreationDateTime": now.Unix(), "Keys": key, "NewImage": img,
			"SequenceNumber": fmt.Sprintf("%021d", s.seq), "SizeBytes": len(key), "StreamViewType": "NEW_IMAGE",
		},
	})
	if s.opts.Filter != nil && !s.opts.Filter(raw) {
		return
	}
	var rec events.DynamoDBEventRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		s.opts.Log.Error("stream: cannot build record", "error", err.Error())
		return
	}
	s.pending.Add(1)
	s.queue <- rec
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// deliver hands batches to the consumer in order. A failed batch is retried
// from its first failed record; a record that still fails after MaxRetries
// is written to the dead-letter file and the stream moves on past it.
func (s *Stream) deliver(ctx context.Context) {
	defer s.wg.Done()
	var batch []events.DynamoDBEventRecord
	retries := 0
	for {
		if len(batch) == 0 {
			select {
			case r, ok := <-s.queue:
				if !ok {
					return
				}
				batch = append(batch, r)
			case <-ctx.Done():
				return
			}
		}
	fill:
		for len(batch) < s.opts.BatchSize {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		failedFrom := s.invoke(ctx, batch)
		if failedFrom < 0 {
			s.pending.Add(-int64(len(batch)))
			batch, retries = nil, 0
			continue
		}
		s.pending.Add(-int64(failedFrom))
		if failedFrom > 0 {
			retries = 0 // the checkpoint moved: the records from here on get their own retries
		}
		batch = batch[failedFrom:]
		retries++
		if retries > s.opts.MaxRetries {
			// The template bisects a failing batch, which isolates the
			// record that keeps failing: only it goes to the on-failure
			// destination, and the stream goes on with the rest.
			s.deadLetter(batch[:1])
			s.pending.Add(-1)
			batch, retries = batch[1:], 0
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.Backoff):
		}
	}
}

// invoke runs the consumer; it returns the index of the first record to
// retry, or -1 when the whole batch succeeded.
func (s *Stream) invoke(ctx context.Context, batch []events.DynamoDBEventRecord) (failedFrom int) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error("stream consumer panicked", "panic", fmt.Sprint(p))
			failedFrom = 0
		}
	}()
	resp, err := s.opts.Consumer(ctx, events.DynamoDBEvent{Records: batch})
	if err != nil {
		s.opts.Log.Warn("stream consumer failed; retrying the batch", "error", err.Error())
		return 0
	}
	first := -1
	for _, f := range resp.BatchItemFailures {
		for i, r := range batch {
			if r.Change.SequenceNumber == f.ItemIdentifier && (first < 0 || i < first) {
				first = i
			}
		}
	}
	return first
}

func (s *Stream) deadLetter(batch []events.DynamoDBEventRecord) {
	s.opts.Log.Error("stream records given up on", "records", len(batch))
	if s.opts.DeadLetterDir == "" {
		return
	}
	s.dlqMu.Lock()
	defer s.dlqMu.Unlock()
	if err := os.MkdirAll(s.opts.DeadLetterDir, 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(s.opts.DeadLetterDir, "stream-dead-letters.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	for _, r := range batch {
		b, _ := json.Marshal(r)
		f.Write(append(b, '\n'))
	}
}

// Drain waits until every record emitted so far was handled, or ctx ends.
func (s *Stream) Drain(ctx context.Context) error {
	for {
		if s.pending.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops delivery.
func (s *Stream) Close() {
	s.stop()
	s.wg.Wait()
}
