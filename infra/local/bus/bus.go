package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Limits and defaults.
const (
	// MaxEntries is the most entries one PutEvents call takes.
	MaxEntries = 10
	// MaxRequestSize is the most bytes of entries one PutEvents call takes,
	// counted as EventBridge counts them ("Calculating PutEvents event entry
	// size": Source, DetailType, Detail and Resources as UTF-8, 14 for Time).
	MaxRequestSize = 256 * 1024
	// DefaultMaxAttempts is Rule.MaxAttempts when it is 0: attempts in all,
	// the first included. Real EventBridge retries for 24 hours (185
	// attempts by default); locally a failing target is dead-lettered fast.
	DefaultMaxAttempts = 3
	// DefaultCloseTimeout is Options.CloseTimeout when it is 0.
	DefaultCloseTimeout = 10 * time.Second
	// DeadLetterFile is the file in Options.DeadLetterDir that gets one JSON
	// line (a DeadLetter) per dead-lettered delivery.
	DeadLetterFile = "dead-letters.jsonl"
	// DefaultBus is the name of the account's default event bus.
	DefaultBus = "default"
)

// Per-entry error codes, as EventBridge answers them in PutEvents results.
const (
	CodeInvalidArgument        = "InvalidArgument"
	CodeMalformedDetail        = "MalformedDetail"
	CodeResourceNotFound       = "ResourceNotFoundException"
	CodeNotAuthorizedForSource = "NotAuthorizedForSourceException"
	CodeInternalFailure        = "InternalFailure"
	CodeValidation             = "ValidationException"
)

// Target is a function handler a rule invokes with the event; a returned
// error (or a panic) is a failed invocation that is retried.
type Target func(ctx context.Context, ev events.EventBridgeEvent) error

// Rule routes the events of one bus that match Pattern to every target.
type Rule struct {
	Name string
	// EventBusName is the rule's bus, by name or ARN; "" is "default".
	EventBusName string
	Pattern      *Pattern
	// Targets maps a target id to its handler; each is delivered to
	// independently.
	Targets map[string]Target
	// MaxAttempts is how many times a delivery is tried in all before it is
	// dead-lettered; 0 means DefaultMaxAttempts (3).
	MaxAttempts int
}

// Options configures a Bus. Only Rules is required.
type Options struct {
	Rules []Rule
	// Buses names further buses that exist without rules (by name or ARN):
	// events put on them are accepted and match nothing. "default" and
	// every rule's bus always exist; PutEvents to any other bus fails the
	// entry with ResourceNotFoundException, as EventBridge does.
	Buses []string
	// DeadLetterDir, when set, gets DeadLetterFile with one JSON line per
	// dead-lettered delivery; "" keeps dead letters in memory only.
	DeadLetterDir string
	// Backoff is the wait after failed attempt n (1-based) before the next;
	// nil means 100ms doubling per attempt, at most 5s.
	Backoff func(attempt int) time.Duration
	// Account and Region go into every event; defaults 123456789012 and
	// us-east-1.
	Account, Region string
	// Now stamps events put without a Time; nil means time.Now.
	Now func() time.Time
	// CloseTimeout bounds how long Close waits for in-flight deliveries
	// before it cancels them; 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Logger gets a line per failed attempt and per dead letter; nil
	// discards.
	Logger *slog.Logger
}

// Entry is one PutEvents request entry.
type Entry struct {
	Source     string
	DetailType string
	// Detail is the event's detail: a JSON object, as a string.
	Detail string
	// EventBusName is the bus by name or ARN; "" is "default".
	EventBusName string
	Resources    []string
	// Time stamps the event; zero means Options.Now().
	Time        time.Time
	TraceHeader string
}

// Result is one PutEvents result entry: EventID on success, otherwise
// ErrorCode and ErrorMessage.
type Result struct {
	EventID      string
	ErrorCode    string
	ErrorMessage string
}

// DeadLetter is a delivery that ran out of attempts.
type DeadLetter struct {
	Rule         string                  `json:"rule"`
	EventBusName string                  `json:"event_bus_name"`
	Target       string                  `json:"target"`
	Event        events.EventBridgeEvent `json:"event"`
	LastError    string                  `json:"last_error"`
	Attempts     int                     `json:"attempts"`
	Time         time.Time               `json:"time"`
}

type rule struct {
	name, bus   string
	pattern     *Pattern
	targetIDs   []string
	targets     map[string]Target
	maxAttempts int
}

// Bus is the local event bus: an http.Handler serving PutEvents and the
// delivery machinery behind it. It is safe for concurrent use.
type Bus struct {
	rules        map[string][]*rule // by bus name
	buses        map[string]bool
	dlqDir       string
	backoff      func(int) time.Duration
	account      string
	region       string
	now          func() time.Time
	closeTimeout time.Duration
	log          *slog.Logger

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	inflight int
	idle     chan struct{} // closed while inflight == 0
	dead     []DeadLetter
	fileMu   sync.Mutex
}

// New builds a Bus. It panics on a rule without a name or pattern, with a
// nil target, or named twice on one bus: those are wiring mistakes.
func New(opts Options) *Bus {
	b := &Bus{
		rules:        map[string][]*rule{},
		buses:        map[string]bool{DefaultBus: true},
		dlqDir:       opts.DeadLetterDir,
		backoff:      opts.Backoff,
		account:      opts.Account,
		region:       opts.Region,
		now:          opts.Now,
		closeTimeout: opts.CloseTimeout,
		log:          opts.Logger,
		idle:         make(chan struct{}),
	}
	close(b.idle)
	if b.backoff == nil {
		b.backoff = defaultBackoff
	}
	if b.account == "" {
		b.account = "123456789012"
	}
	if b.region == "" {
		b.region = "us-east-1"
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.closeTimeout <= 0 {
		b.closeTimeout = DefaultCloseTimeout
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	for _, name := range opts.Buses {
		b.buses[busName(name)] = true
	}
	for _, r := range opts.Rules {
		bus := busName(r.EventBusName)
		if r.Name == "" {
			panic("bus.New: a rule has no name")
		}
		if r.Pattern == nil {
			panic(fmt.Sprintf("bus.New: rule %q has no pattern", r.Name))
		}
		for _, other := range b.rules[bus] {
			if other.name == r.Name {
				panic(fmt.Sprintf("bus.New: rule %q is defined twice on bus %q", r.Name, bus))
			}
		}
		nr := &rule{name: r.Name, bus: bus, pattern: r.Pattern, targets: map[string]Target{}, maxAttempts: r.MaxAttempts}
		if nr.maxAttempts <= 0 {
			nr.maxAttempts = DefaultMaxAttempts
		}
		for id, t := range r.Targets {
			if t == nil {
				panic(fmt.Sprintf("bus.New: rule %q target %q is nil", r.Name, id))
			}
			nr.targets[id] = t
			nr.targetIDs = append(nr.targetIDs, id)
		}
		slices.Sort(nr.targetIDs)
		b.buses[bus] = true
		b.rules[bus] = append(b.rules[bus], nr)
	}
	return b
}

func defaultBackoff(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// busName turns a bus name or ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)
// into its name; "" is the default bus.
func busName(s string) string {
	if strings.HasPrefix(s, "arn:") {
		if i := strings.LastIndex(s, ":event-bus/"); i >= 0 {
			s = s[i+len(":event-bus/"):]
		}
	}
	if s == "" {
		return DefaultBus
	}
	return s
}

// Put is PutEvents for in-process callers: one Result per entry, in order.
// A call with more than MaxEntries entries or more than MaxRequestSize bytes
// of entries fails every entry with ValidationException (PutEvents fails the
// whole request). Unlike PutEvents over HTTP it accepts "aws." sources, so
// local stand-ins for AWS services can emit their events. ctx only bounds
// the call; deliveries outlive it.
func (b *Bus) Put(ctx context.Context, entries []Entry) []Result {
	return b.put(ctx, entries, true)
}

func (b *Bus) put(_ context.Context, entries []Entry, allowAWSSource bool) []Result {
	results := make([]Result, len(entries))
	if msg := requestError(entries); msg != "" {
		for i := range results {
			results[i] = Result{ErrorCode: CodeValidation, ErrorMessage: msg}
		}
		return results
	}
	for i, e := range entries {
		results[i] = b.putOne(e, allowAWSSource)
	}
	return results
}

// requestError is the whole-request validation EventBridge does.
func requestError(entries []Entry) string {
	if len(entries) == 0 {
		return "1 validation error detected: Value '[]' at 'entries' failed to satisfy constraint: Member must have length greater than or equal to 1"
	}
	if len(entries) > MaxEntries {
		return "1 validation error detected: Value '[PutEventsRequestEntry]' at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10"
	}
	total := 0
	for _, e := range entries {
		total += entrySize(e)
	}
	if total > MaxRequestSize {
		return "Total size of the entries in the request is over the limit."
	}
	return ""
}

func entrySize(e Entry) int {
	n := len(e.Source) + len(e.DetailType) + len(e.Detail)
	if !e.Time.IsZero() {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

func entryError(code, msg string) Result { return Result{ErrorCode: code, ErrorMessage: msg} }

func (b *Bus) putOne(e Entry, allowAWSSource bool) Result {
	switch {
	case e.Source == "":
		return entryError(CodeInvalidArgument, "Parameter Source is not valid. Reason: Source is a required argument.")
	case e.DetailType == "":
		return entryError(CodeInvalidArgument, "Parameter DetailType is not valid. Reason: DetailType is a required argument.")
	case e.Detail == "":
		return entryError(CodeInvalidArgument, "Parameter Detail is not valid. Reason: Detail is a required argument.")
	}
	detail, ok := detailObject(e.Detail)
	if !ok {
		return entryError(CodeMalformedDetail, "Detail is malformed.")
	}
	if !allowAWSSource && strings.HasPrefix(e.Source, "aws.") {
		return entryError(CodeNotAuthorizedForSource, "Not authorized for the source.")
	}
	bus := busName(e.EventBusName)
	if !b.buses[bus] {
		return entryError(CodeResourceNotFound, fmt.Sprintf("Event bus %s does not exist.", bus))
	}
	t := e.Time
	if t.IsZero() {
		t = b.now()
	}
	ev := events.EventBridgeEvent{
		Version:    "0",
		ID:         newEventID(),
		DetailType: e.DetailType,
		Source:     e.Source,
		AccountID:  b.account,
		Time:       t.UTC().Truncate(time.Second),
		Region:     b.region,
		Resources:  append([]string{}, e.Resources...),
		Detail:     detail,
	}
	envelope, err := json.Marshal(ev)
	if err != nil {
		return entryError(CodeInternalFailure, "Internal Service Failure")
	}
	type delivery struct {
		r  *rule
		id string
	}
	var ds []delivery
	for _, r := range b.rules[bus] {
		if r.pattern.Matches(envelope) {
			for _, id := range r.targetIDs {
				ds = append(ds, delivery{r, id})
			}
		}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return entryError(CodeInternalFailure, "Internal Service Failure: the local event bus is closed.")
	}
	if len(ds) > 0 {
		if b.inflight == 0 {
			b.idle = make(chan struct{})
		}
		b.inflight += len(ds)
	}
	b.mu.Unlock()
	for _, d := range ds {
		go b.deliver(d.r, d.id, ev)
	}
	return Result{EventID: ev.ID}
}

// detailObject validates that s is a JSON object and returns it compacted.
func detailObject(s string) (json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		return nil, false
	}
	return json.RawMessage(buf.Bytes()), true
}

// newEventID returns a random (version 4) UUID.
func newEventID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// copyEvent gives each delivery its own slices, so a target cannot change
// what another sees.
func copyEvent(ev events.EventBridgeEvent) events.EventBridgeEvent {
	ev.Resources = append([]string{}, ev.Resources...)
	ev.Detail = append(json.RawMessage{}, ev.Detail...)
	return ev
}

func (b *Bus) deliver(r *rule, targetID string, ev events.EventBridgeEvent) {
	defer b.done()
	target := r.targets[targetID]
	var lastErr error
	attempts := 0
	for attempts < r.maxAttempts {
		attempts++
		lastErr = invoke(b.ctx, target, copyEvent(ev))
		if lastErr == nil {
			return
		}
		b.log.Warn("event bus: target invocation failed", "rule", r.name, "bus", r.bus, "target", targetID,
			"event_id", ev.ID, "attempt", attempts, "max_attempts", r.maxAttempts, "error", lastErr.Error())
		if attempts >= r.maxAttempts {
			break
		}
		if b.ctx.Err() != nil {
			lastErr = fmt.Errorf("bus closed before the next attempt: %w", lastErr)
			break
		}
		timer := time.NewTimer(b.backoff(attempts))
		select {
		case <-timer.C:
			continue
		case <-b.ctx.Done():
			timer.Stop()
			lastErr = fmt.Errorf("bus closed before the next attempt: %w", lastErr)
		}
		break
	}
	b.deadLetter(DeadLetter{
		Rule:         r.name,
		EventBusName: r.bus,
		Target:       targetID,
		Event:        ev,
		LastError:    lastErr.Error(),
		Attempts:     attempts,
		Time:         time.Now().UTC(),
	})
}

// invoke runs a target, turning a panic into an error as Lambda reports a
// crashed invocation.
func invoke(ctx context.Context, t Target, ev events.EventBridgeEvent) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("target panicked: %v", p)
		}
	}()
	return t(ctx, ev)
}

func (b *Bus) deadLetter(dl DeadLetter) {
	b.log.Error("event bus: delivery dead-lettered", "rule", dl.Rule, "bus", dl.EventBusName, "target", dl.Target,
		"event_id", dl.Event.ID, "attempts", dl.Attempts, "error", dl.LastError)
	if b.dlqDir != "" {
		if err := b.appendDeadLetter(dl); err != nil {
			b.log.Error("event bus: writing dead letter", "dir", b.dlqDir, "error", err.Error())
		}
	}
	b.mu.Lock()
	b.dead = append(b.dead, dl)
	b.mu.Unlock()
}

func (b *Bus) appendDeadLetter(dl DeadLetter) error {
	line, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	b.fileMu.Lock()
	defer b.fileMu.Unlock()
	if err := os.MkdirAll(b.dlqDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(b.dlqDir, DeadLetterFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *Bus) done() {
	b.mu.Lock()
	b.inflight--
	if b.inflight == 0 {
		close(b.idle)
	}
	b.mu.Unlock()
}

// DeadLetters returns the deliveries that ran out of attempts since New, in
// the order they were dead-lettered.
func (b *Bus) DeadLetters() []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]DeadLetter, len(b.dead))
	for i, dl := range b.dead {
		dl.Event = copyEvent(dl.Event)
		out[i] = dl
	}
	return out
}

// Wait blocks until no delivery is in flight (retries and their back-off
// included) or ctx ends.
func (b *Bus) Wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		if b.inflight == 0 {
			b.mu.Unlock()
			return nil
		}
		idle := b.idle
		b.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops accepting events (later entries fail with InternalFailure) and
// waits up to Options.CloseTimeout for in-flight deliveries. If they do not
// finish it cancels them (targets see their context cancelled; a delivery
// waiting to retry is dead-lettered), waits briefly once more and returns an
// error. Closing twice is harmless.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.closeTimeout)
	err := b.Wait(ctx)
	cancel()
	b.cancel()
	if err == nil {
		return nil
	}
	grace, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if b.Wait(grace) != nil {
		b.mu.Lock()
		n := b.inflight
		b.mu.Unlock()
		return fmt.Errorf("event bus: %d deliveries still running %s after close", n, b.closeTimeout)
	}
	return fmt.Errorf("event bus: deliveries cancelled after waiting %s", b.closeTimeout)
}
