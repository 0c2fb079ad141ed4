package cloud_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// The local stream on its own: the real DynamoDB endpoint of the local
// cloud with the stream in front of it, written through the real SDK, and a
// consumer that records what it is handed (and fails when told to).

type streamRecorder struct {
	mu      sync.Mutex
	seen    []events.DynamoDBEventRecord
	batches int
	// fail decides, per call, which record (by its "n" attribute) to report
	// as the first batch item failure; "" for none.
	fail func(batch []events.DynamoDBEventRecord) string
}

func (r *streamRecorder) consume(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches++
	var resp events.DynamoDBEventResponse
	failAt := ""
	if r.fail != nil {
		failAt = r.fail(ev.Records)
	}
	for _, rec := range ev.Records {
		if n(rec) == failAt {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
			return resp, nil
		}
		r.seen = append(r.seen, rec)
	}
	return resp, nil
}

func (r *streamRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.seen))
	for _, rec := range r.seen {
		out = append(out, rec.EventName+":"+n(rec))
	}
	return out
}

func n(rec events.DynamoDBEventRecord) string {
	if v, ok := rec.Change.NewImage["n"]; ok {
		return v.String()
	}
	return ""
}

func startStream(t *testing.T, rec *streamRecorder, opts cloud.StreamOptions) (*dynamodb.Client, *cloud.Stream, string) {
	t.Helper()
	tmpl, err := samtemplate.LoadRepo(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cloud.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.TableName, opts.Consumer = "stream-test", rec.consume
	var s *cloud.Stream
	d, err := cloud.ServeDynamo(l, tmpl, "stream-test", "", func(h http.Handler) http.Handler {
		s = cloud.NewStream(h, opts)
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); d.Close() })
	return d.Client(), s, "stream-test"
}

func putN(t *testing.T, c *dynamodb.Client, table string, i int, cond *string) error {
	t.Helper()
	_, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), ConditionExpression: cond, Item: map[string]types.AttributeValue{
		"PK": &types.AttributeValueMemberS{Value: "P#" + strconv.Itoa(i%4)}, "SK": &types.AttributeValueMemberS{Value: fmt.Sprintf("S#%03d", i)},
		"n": &types.AttributeValueMemberS{Value: strconv.Itoa(i)}, "entity": &types.AttributeValueMemberS{Value: "audit"},
	}})
	return err
}

func drainStream(t *testing.T, s *cloud.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStreamDeliversCommitsInOrder: concurrent writes are delivered once
// each, in the order they committed (sequence numbers grow), as INSERT or
// MODIFY with the new image; a write whose condition fails emits nothing.
func TestStreamDeliversCommitsInOrder(t *testing.T) {
	rec := &streamRecorder{}
	c, s, table := startStream(t, rec, cloud.StreamOptions{BatchSize: 7})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := putN(t, c, table, i, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := putN(t, c, table, 3, nil); err != nil { // overwrite: MODIFY
		t.Fatal(err)
	}
	if err := putN(t, c, table, 5, aws.String("attribute_not_exists(PK)")); err == nil { // refused: nothing
		t.Fatal("conditional put over an existing item succeeded")
	}
	drainStream(t, s)
	rec.mu.Lock()
	seen := append([]events.DynamoDBEventRecord(nil), rec.seen...)
	rec.mu.Unlock()
	if len(seen) != 41 {
		t.Fatalf("%d records for 41 committed writes", len(seen))
	}
	got := map[string]int{}
	for i, r := range seen {
		if i > 0 && r.Change.SequenceNumber <= seen[i-1].Change.SequenceNumber {
			t.Fatalf("record %d out of order: %s after %s", i, r.Change.SequenceNumber, seen[i-1].Change.SequenceNumber)
		}
		if r.Change.StreamViewType != "NEW_IMAGE" || r.EventSource != "aws:dynamodb" || r.Change.Keys["PK"].String() == "" {
			t.Fatalf("record %d: %+v", i, r)
		}
		got[r.EventName+":"+n(r)]++
	}
	if got["MODIFY:3"] != 1 || got["INSERT:3"] != 1 || got["INSERT:5"] != 1 || len(got) != 41 {
		t.Fatalf("records by kind: %v", got)
	}
	if seen[len(seen)-1].EventName != "MODIFY" {
		t.Fatalf("the last commit (an overwrite) is not the last record: %+v", seen[len(seen)-1])
	}
	if rec.batches > 41 || rec.batches < 6 {
		t.Fatalf("%d batches of at most 7", rec.batches)
	}
}

// TestStreamRetriesFromTheFirstFailure: a record reported as a batch item
// failure is handed again, with everything after it and nothing before it;
// a record that fails every time is dead-lettered after MaxRetries and the
// stream goes on.
func TestStreamRetriesFromTheFirstFailure(t *testing.T) {
	dir := t.TempDir()
	failures := map[string]int{}
	rec := &streamRecorder{fail: func(batch []events.DynamoDBEventRecord) string {
		for _, r := range batch {
			switch n(r) {
			case "2":
				if failures["2"] < 2 { // fails twice, then passes
					failures["2"]++
					return "2"
				}
			case "4":
				failures["4"]++ // always fails
				return "4"
			}
		}
		return ""
	}}
	c, s, table := startStream(t, rec, cloud.StreamOptions{BatchSize: 10, MaxRetries: 3, Backoff: time.Millisecond, DeadLetterDir: dir})
	for i := range 7 {
		if err := putN(t, c, table, i, nil); err != nil {
			t.Fatal(err)
		}
	}
	drainStream(t, s)
	if got, want := strings.Join(rec.names(), " "), "INSERT:0 INSERT:1 INSERT:2 INSERT:3 INSERT:5 INSERT:6"; got != want {
		t.Fatalf("delivered %q, want %q (each once, in order, 4 given up on)", got, want)
	}
	if failures["2"] != 2 || failures["4"] != 4 {
		t.Fatalf("failures %v: want 2 for record 2 and 1+MaxRetries=4 for record 4", failures)
	}
	b, err := os.ReadFile(filepath.Join(dir, "stream-dead-letters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"n":{"S":"4"}`) && !strings.Contains(lines[0], `"4"`) {
		t.Fatalf("dead letters: %q", lines)
	}
}

// TestStreamFilter: records the mapping's filter refuses are not delivered.
func TestStreamFilter(t *testing.T) {
	rec := &streamRecorder{}
	c, s, table := startStream(t, rec, cloud.StreamOptions{Filter: func(raw []byte) bool { return !strings.Contains(string(raw), `"S#001"`) }})
	for i := range 3 {
		if err := putN(t, c, table, i, nil); err != nil {
			t.Fatal(err)
		}
	}
	drainStream(t, s)
	if got := strings.Join(rec.names(), " "); got != "INSERT:0 INSERT:2" {
		t.Fatalf("delivered %q", got)
	}
}
