package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpuaas/app-artifacts/infra/local/bus"
)

const customBus = "gpuaas-app-artifacts-dev"

var fixedNow = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

func mustPattern(t *testing.T, s string) *bus.Pattern {
	t.Helper()
	p, err := bus.ParsePattern([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder is a target that records what it gets and fails its first
// failures invocations (forever when failures < 0).
type recorder struct {
	mu       sync.Mutex
	calls    int
	failures int
	got      []events.EventBridgeEvent
}

func (r *recorder) target(_ context.Context, ev events.EventBridgeEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failures < 0 || r.calls <= r.failures {
		return errors.New("injected failure " + string(rune('0'+r.calls)))
	}
	r.got = append(r.got, ev)
	return nil
}

func (r *recorder) snapshot() (int, []events.EventBridgeEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]events.EventBridgeEvent(nil), r.got...)
}

// serve starts the bus behind an httptest server on 127.0.0.1 and returns a
// real EventBridge client pointed at it.
func serve(t *testing.T, b *bus.Bus) *eventbridge.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(b)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return eventbridge.New(eventbridge.Options{
		BaseEndpoint:     aws.String(srv.URL),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDLOCAL", "local-secret", ""),
		HTTPClient:       awshttp.NewBuildableClient(),
		RetryMaxAttempts: 1,
	})
}

func wait(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func tinyBackoff(int) time.Duration { return time.Millisecond }

func registered(artifact string) ebtypes.PutEventsRequestEntry {
	return ebtypes.PutEventsRequestEntry{
		Source:       aws.String("gpuaas.app-artifacts"),
		DetailType:   aws.String("App Artifact Registered"),
		Detail:       aws.String(`{"artifact_id": "` + artifact + `", "action": "app_artifact.register"}`),
		EventBusName: aws.String(customBus),
		Resources:    []string{"arn:aws:ecr:us-east-1:123456789012:repository/gpuaas/o/p/web"},
	}
}

type resultEntry struct{ EventID, ErrorCode, ErrorMessage string }

func results(out *eventbridge.PutEventsOutput) []resultEntry {
	var rs []resultEntry
	for _, e := range out.Entries {
		rs = append(rs, resultEntry{aws.ToString(e.EventId), aws.ToString(e.ErrorCode), aws.ToString(e.ErrorMessage)})
	}
	return rs
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPutEventsDeliversToMatchingTargetsOnly(t *testing.T) {
	verifier, promoted, defaultBus := &recorder{}, &recorder{}, &recorder{}
	b := bus.New(bus.Options{
		Rules: []bus.Rule{
			{Name: "verify", EventBusName: customBus, Pattern: mustPattern(t, verifierRule), Targets: map[string]bus.Target{"VerifierFunction": verifier.target}},
			{Name: "promoted", EventBusName: "arn:aws:events:us-east-1:123456789012:event-bus/" + customBus,
				Pattern: mustPattern(t, `{"detail-type":["App Artifact Promoted"]}`), Targets: map[string]bus.Target{"Other": promoted.target}},
			// Same pattern on the default bus: rules only see their own bus.
			{Name: "default-verify", Pattern: mustPattern(t, verifierRule), Targets: map[string]bus.Target{"Default": defaultBus.target}},
		},
		Backoff: tinyBackoff,
		Account: "111122223333",
		Region:  "us-east-1",
		Now:     func() time.Time { return fixedNow },
	})
	defer b.Close()
	client := serve(t, b)

	out, err := client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{registered("a1")}})
	if err != nil {
		t.Fatal(err)
	}
	if out.FailedEntryCount != 0 || len(out.Entries) != 1 || !uuidRE.MatchString(aws.ToString(out.Entries[0].EventId)) {
		t.Fatalf("PutEvents answer: %+v", results(out))
	}
	wait(t, b)

	want := []events.EventBridgeEvent{{
		Version: "0", ID: aws.ToString(out.Entries[0].EventId), DetailType: "App Artifact Registered",
		Source: "gpuaas.app-artifacts", AccountID: "111122223333", Time: fixedNow, Region: "us-east-1",
		Resources: []string{"arn:aws:ecr:us-east-1:123456789012:repository/gpuaas/o/p/web"},
		Detail:    json.RawMessage(`{"artifact_id":"a1","action":"app_artifact.register"}`),
	}}
	calls, got := verifier.snapshot()
	if diff := cmp.Diff(want, got); diff != "" || calls != 1 {
		t.Errorf("verifier got %d calls, events (-want +got):\n%s", calls, diff)
	}
	for name, r := range map[string]*recorder{"non-matching rule": promoted, "default bus rule": defaultBus} {
		if calls, _ := r.snapshot(); calls != 0 {
			t.Errorf("%s target invoked %d times, want 0", name, calls)
		}
	}
	if dl := b.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
}

func TestPutEventsAnswersBeforeTargetsRun(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 1)
	b := bus.New(bus.Options{
		Rules: []bus.Rule{{Name: "verify", EventBusName: customBus, Pattern: mustPattern(t, verifierRule),
			Targets: map[string]bus.Target{"VerifierFunction": func(ctx context.Context, ev events.EventBridgeEvent) error {
				started <- ev.ID
				<-release
				return nil
			}}}},
		Backoff: tinyBackoff,
	})
	defer b.Close()
	client := serve(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{registered("a1")}})
	if err != nil {
		t.Fatal(err)
	}
	// The answer came while the target is still blocked.
	select {
	case id := <-started:
		if id != aws.ToString(out.Entries[0].EventId) {
			t.Errorf("target got event %s, PutEvents answered %s", id, aws.ToString(out.Entries[0].EventId))
		}
	case <-ctx.Done():
		t.Fatal("target never started")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := b.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a delivery in flight = %v, want deadline exceeded", err)
	}
	close(release)
	wait(t, b)
}

func TestRetriesThenDeadLetter(t *testing.T) {
	dir := t.TempDir()
	broken, flaky, healthy := &recorder{failures: -1}, &recorder{failures: 2}, &recorder{}
	var backoffs []int
	var mu sync.Mutex
	b := bus.New(bus.Options{
		Rules: []bus.Rule{
			{Name: "verify", EventBusName: customBus, Pattern: mustPattern(t, verifierRule), MaxAttempts: 3,
				Targets: map[string]bus.Target{"Broken": broken.target, "Flaky": flaky.target, "Healthy": healthy.target}},
		},
		DeadLetterDir: dir,
		Backoff: func(attempt int) time.Duration {
			mu.Lock()
			backoffs = append(backoffs, attempt)
			mu.Unlock()
			return time.Millisecond
		},
	})
	defer b.Close()
	client := serve(t, b)

	out, err := client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{registered("a1")}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Entries[0].EventId)
	wait(t, b)

	type outcome struct {
		Calls     int
		Delivered []string
	}
	summary := func(r *recorder) outcome {
		calls, got := r.snapshot()
		o := outcome{Calls: calls}
		for _, ev := range got {
			o.Delivered = append(o.Delivered, ev.ID)
		}
		return o
	}
	gotOutcomes := map[string]outcome{"Broken": summary(broken), "Flaky": summary(flaky), "Healthy": summary(healthy)}
	wantOutcomes := map[string]outcome{
		"Broken":  {Calls: 3},
		"Flaky":   {Calls: 3, Delivered: []string{id}},
		"Healthy": {Calls: 1, Delivered: []string{id}},
	}
	if diff := cmp.Diff(wantOutcomes, gotOutcomes); diff != "" {
		t.Errorf("target outcomes (-want +got):\n%s", diff)
	}

	dls := b.DeadLetters()
	if len(dls) != 1 {
		t.Fatalf("dead letters = %+v, want 1", dls)
	}
	wantDL := bus.DeadLetter{Rule: "verify", EventBusName: customBus, Target: "Broken", LastError: "injected failure 3", Attempts: 3}
	if diff := cmp.Diff(wantDL, dls[0], cmpopts.IgnoreFields(bus.DeadLetter{}, "Event", "Time")); diff != "" {
		t.Errorf("dead letter (-want +got):\n%s", diff)
	}
	if dls[0].Event.ID != id || dls[0].Event.DetailType != "App Artifact Registered" {
		t.Errorf("dead-lettered event = %+v", dls[0].Event)
	}

	// The same dead letter, as one JSON line on disk.
	f, err := os.Open(filepath.Join(dir, bus.DeadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []bus.DeadLetter
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var dl bus.DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		lines = append(lines, dl)
	}
	if diff := cmp.Diff(dls, lines); diff != "" {
		t.Errorf("dead-letter file (-memory +file):\n%s", diff)
	}

	// Backoff ran after attempts 1 and 2 of Broken and of Flaky, never after
	// the last attempt.
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]int{1, 1, 2, 2}, backoffs, cmpopts.SortSlices(func(a, b int) bool { return a < b })); diff != "" {
		t.Errorf("backoff attempts (-want +got):\n%s", diff)
	}
}

func TestPanickingTargetIsAFailedInvocation(t *testing.T) {
	b := bus.New(bus.Options{
		Rules: []bus.Rule{{Name: "verify", EventBusName: customBus, Pattern: mustPattern(t, verifierRule), MaxAttempts: 2,
			Targets: map[string]bus.Target{"Panics": func(context.Context, events.EventBridgeEvent) error { panic("boom") }}}},
		Backoff: tinyBackoff,
	})
	defer b.Close()
	res := b.Put(context.Background(), []bus.Entry{{Source: "gpuaas.app-artifacts", DetailType: "App Artifact Registered", Detail: `{}`, EventBusName: customBus}})
	if res[0].ErrorCode != "" {
		t.Fatalf("Put: %+v", res)
	}
	wait(t, b)
	dls := b.DeadLetters()
	if len(dls) != 1 || dls[0].Attempts != 2 || dls[0].LastError != "target panicked: boom" {
		t.Errorf("dead letters = %+v", dls)
	}
}

func TestPutEventsValidation(t *testing.T) {
	hits := &recorder{}
	b := bus.New(bus.Options{
		Rules: []bus.Rule{
			{Name: "verify", EventBusName: customBus, Pattern: mustPattern(t, verifierRule), Targets: map[string]bus.Target{"T": hits.target}},
			{Name: "ecr-push", Pattern: mustPattern(t, ecrPushRule), Targets: map[string]bus.Target{"T": hits.target}},
		},
		Buses:   []string{"quiet-bus"},
		Backoff: tinyBackoff,
	})
	defer b.Close()
	client := serve(t, b)
	ctx := context.Background()

	t.Run("eleven entries", func(t *testing.T) {
		entries := make([]ebtypes.PutEventsRequestEntry, 11)
		for i := range entries {
			entries[i] = registered("a")
		}
		_, err := client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" ||
			!strings.Contains(apiErr.ErrorMessage(), "less than or equal to 10") {
			t.Fatalf("PutEvents(11 entries) error = %v, want ValidationException", err)
		}
		var httpErr *awshttp.ResponseError
		if !errors.As(err, &httpErr) || httpErr.HTTPStatusCode() != http.StatusBadRequest {
			t.Errorf("status: %v", err)
		}
	})

	t.Run("too large", func(t *testing.T) {
		big := registered("a")
		big.Detail = aws.String(`{"pad":"` + strings.Repeat("x", 200*1024) + `"}`)
		_, err := client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{big, big}})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" {
			t.Fatalf("PutEvents(400 KiB) error = %v, want ValidationException", err)
		}
	})

	t.Run("per entry", func(t *testing.T) {
		noDetailType := registered("a")
		noDetailType.DetailType = nil
		noSource := registered("a")
		noSource.Source = nil
		noDetail := registered("a")
		noDetail.Detail = nil
		notJSON := registered("a")
		notJSON.Detail = aws.String(`{"artifact_id": `)
		array := registered("a")
		array.Detail = aws.String(`[{"artifact_id": "a"}]`)
		str := registered("a")
		str.Detail = aws.String(`"artifact"`)
		unknownBus := registered("a")
		unknownBus.EventBusName = aws.String("no-such-bus")
		awsSource := registered("a")
		awsSource.Source = aws.String("aws.ecr")
		quiet := registered("a")
		quiet.EventBusName = aws.String("quiet-bus")

		out, err := client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
			registered("ok"), noDetailType, noSource, noDetail, notJSON, array, str, unknownBus, awsSource, quiet,
		}})
		if err != nil {
			t.Fatal(err)
		}
		got := results(out)
		for i := range got {
			if got[i].EventID != "" {
				got[i].EventID = "<id>"
			}
		}
		want := []resultEntry{
			{EventID: "<id>"},
			{ErrorCode: "InvalidArgument", ErrorMessage: "Parameter DetailType is not valid. Reason: DetailType is a required argument."},
			{ErrorCode: "InvalidArgument", ErrorMessage: "Parameter Source is not valid. Reason: Source is a required argument."},
			{ErrorCode: "InvalidArgument", ErrorMessage: "Parameter Detail is not valid. Reason: Detail is a required argument."},
			{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."},
			{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."},
			{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."},
			{ErrorCode: "ResourceNotFoundException", ErrorMessage: "Event bus no-such-bus does not exist."},
			{ErrorCode: "NotAuthorizedForSourceException", ErrorMessage: "Not authorized for the source."},
			{EventID: "<id>"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("PutEvents entries (-want +got):\n%s", diff)
		}
		if out.FailedEntryCount != 8 {
			t.Errorf("FailedEntryCount = %d, want 8", out.FailedEntryCount)
		}
		wait(t, b)
		if calls, _ := hits.snapshot(); calls != 1 {
			t.Errorf("targets invoked %d times, want 1 (only the valid entry on a bus with a matching rule)", calls)
		}
	})
}

func TestPutInProcess(t *testing.T) {
	pushes := &recorder{}
	b := bus.New(bus.Options{
		Rules: []bus.Rule{{Name: "ecr-push", Pattern: mustPattern(t, ecrPushRule), Targets: map[string]bus.Target{"RegistrarFunction": pushes.target}}},
		Now:   func() time.Time { return fixedNow },
	})
	defer b.Close()
	ctx := context.Background()
	when := time.Date(2019, 11, 16, 1, 54, 34, 0, time.UTC)

	// A local ECR stand-in emits an aws.ecr event in process.
	push := bus.Entry{Source: "aws.ecr", DetailType: "ECR Image Action", Time: when,
		Detail: `{"result":"SUCCESS","repository-name":"gpuaas/org-1/proj-1/web","image-digest":"sha256:aa","action-type":"PUSH","image-tag":"v1"}`}
	other := push
	other.Detail = `{"result":"SUCCESS","repository-name":"someone-else/web","action-type":"PUSH"}`
	res := b.Put(ctx, []bus.Entry{push, other})
	if len(res) != 2 || res[0].ErrorCode != "" || res[1].ErrorCode != "" || res[0].EventID == res[1].EventID {
		t.Fatalf("Put = %+v", res)
	}
	wait(t, b)
	_, got := pushes.snapshot()
	want := []events.EventBridgeEvent{{Version: "0", ID: res[0].EventID, DetailType: "ECR Image Action", Source: "aws.ecr",
		AccountID: "123456789012", Time: when, Region: "us-east-1", Resources: []string{},
		Detail: json.RawMessage(`{"result":"SUCCESS","repository-name":"gpuaas/org-1/proj-1/web","image-digest":"sha256:aa","action-type":"PUSH","image-tag":"v1"}`)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registrar got (-want +got):\n%s", diff)
	}

	// Whole-request limits fail every entry in process.
	eleven := make([]bus.Entry, 11)
	for i := range eleven {
		eleven[i] = push
	}
	for _, r := range b.Put(ctx, eleven) {
		if r.ErrorCode != "ValidationException" || r.EventID != "" {
			t.Fatalf("Put(11) result %+v, want ValidationException", r)
		}
	}
}

func TestEventIDsAreUnique(t *testing.T) {
	b := bus.New(bus.Options{})
	defer b.Close()
	seen := map[string]bool{}
	for range 50 {
		entries := make([]bus.Entry, 10)
		for i := range entries {
			entries[i] = bus.Entry{Source: "s", DetailType: "d", Detail: `{}`}
		}
		for _, r := range b.Put(context.Background(), entries) {
			if !uuidRE.MatchString(r.EventID) || seen[r.EventID] {
				t.Fatalf("event id %q is not a fresh UUID", r.EventID)
			}
			seen[r.EventID] = true
		}
	}
}

func TestCloseIsBounded(t *testing.T) {
	var cancelled atomic.Bool
	b := bus.New(bus.Options{
		Rules: []bus.Rule{{Name: "stuck", Pattern: mustPattern(t, `{"source":["s"]}`), MaxAttempts: 5,
			Targets: map[string]bus.Target{"Stuck": func(ctx context.Context, _ events.EventBridgeEvent) error {
				<-ctx.Done()
				cancelled.Store(true)
				return ctx.Err()
			}}}},
		Backoff:      tinyBackoff,
		CloseTimeout: 50 * time.Millisecond,
	})
	if res := b.Put(context.Background(), []bus.Entry{{Source: "s", DetailType: "d", Detail: `{}`}}); res[0].ErrorCode != "" {
		t.Fatalf("Put = %+v", res)
	}
	start := time.Now()
	if err := b.Close(); err == nil {
		t.Error("Close with a stuck delivery returned nil, want an error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	if !cancelled.Load() {
		t.Error("the stuck target's context was not cancelled")
	}
	wait(t, b)
	if dls := b.DeadLetters(); len(dls) != 1 || dls[0].Attempts != 1 {
		t.Errorf("dead letters after close = %+v, want the cancelled delivery", dls)
	}
	res := b.Put(context.Background(), []bus.Entry{{Source: "s", DetailType: "d", Detail: `{}`}})
	if res[0].ErrorCode != "InternalFailure" {
		t.Errorf("Put after Close = %+v, want InternalFailure", res)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestCloseWaitsForDeliveries(t *testing.T) {
	done := &recorder{}
	b := bus.New(bus.Options{
		Rules: []bus.Rule{{Name: "slow", Pattern: mustPattern(t, `{"source":["s"]}`),
			Targets: map[string]bus.Target{"Slow": func(ctx context.Context, ev events.EventBridgeEvent) error {
				time.Sleep(20 * time.Millisecond)
				return done.target(ctx, ev)
			}}}},
	})
	b.Put(context.Background(), []bus.Entry{{Source: "s", DetailType: "d", Detail: `{}`}})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if calls, got := done.snapshot(); calls != 1 || len(got) != 1 {
		t.Errorf("slow target: %d calls, %d delivered; want the delivery finished before Close returned", calls, len(got))
	}
}

func TestHTTPRejectsOtherOperations(t *testing.T) {
	b := bus.New(bus.Options{})
	defer b.Close()
	cases := []struct {
		name, method, path, target string
		status                     int
		errType                    string
	}{
		{"other operation", http.MethodPost, "/", "AWSEvents.PutRule", http.StatusBadRequest, "UnknownOperationException"},
		{"no target", http.MethodPost, "/", "", http.StatusBadRequest, "UnknownOperationException"},
		{"GET", http.MethodGet, "/", "AWSEvents.PutEvents", http.StatusMethodNotAllowed, "UnknownOperationException"},
		{"bad body", http.MethodPost, "/", "AWSEvents.PutEvents", http.StatusBadRequest, "SerializationException"},
	}
	type answer struct {
		Status  int
		ErrType string
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(`{"Entries":`))
			req.Header.Set("X-Amz-Target", tc.target)
			rec := httptest.NewRecorder()
			b.ServeHTTP(rec, req)
			var body struct {
				Type string `json:"__type"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if body.Type != rec.Header().Get("X-Amzn-ErrorType") {
				t.Errorf("__type %q and X-Amzn-ErrorType %q differ", body.Type, rec.Header().Get("X-Amzn-ErrorType"))
			}
			if diff := cmp.Diff(answer{tc.status, tc.errType}, answer{rec.Code, body.Type}); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHTTPTimeIsEpochSeconds(t *testing.T) {
	got := &recorder{}
	b := bus.New(bus.Options{Rules: []bus.Rule{{Name: "all", Pattern: mustPattern(t, `{"source":["s"]}`), Targets: map[string]bus.Target{"T": got.target}}}})
	defer b.Close()
	client := serve(t, b)
	when := time.Date(2024, 2, 29, 12, 30, 15, 0, time.UTC)
	_, err := client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`{}`), Time: aws.Time(when),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, b)
	_, evs := got.snapshot()
	if len(evs) != 1 || !evs[0].Time.Equal(when) {
		t.Errorf("delivered %+v, want time %s", evs, when)
	}
}
