package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/dynamo"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// Source is the source of every event this service publishes.
const Source = "gpuaas.app-artifacts"

// Detail types (SPEC section 7).
const (
	DetailIntentCreated         = "App Artifact Publish Intent Created"
	DetailRegistered            = "App Artifact Registered"
	DetailPromoted              = "App Artifact Promoted"
	DetailDeprecated            = "App Artifact Deprecated"
	DetailRetired               = "App Artifact Retired"
	DetailTrustChanged          = "App Artifact Trust Changed"
	DetailVerificationRequested = "App Artifact Verification Requested"
	DetailPolicyUpdated         = "App Artifact Policy Updated"
)

// maxEntries is PutEvents' limit per call.
const maxEntries = 10

// DetailType names the event of an audit row.
func DetailType(e *lifecycle.AuditEvent) string {
	switch e.Action {
	case "app_artifact.publish_intent":
		return DetailIntentCreated
	case "app_artifact.register":
		return DetailRegistered
	case "app_artifact.promote":
		return DetailPromoted
	case "app_artifact.deprecate":
		return DetailDeprecated
	case "app_artifact.retire":
		return DetailRetired
	case "app_artifact.verify":
		// A verify row either records a verdict or a request for one.
		if e.After != nil && e.After.Trust == artifact.Unverified {
			return DetailVerificationRequested
		}
		return DetailTrustChanged
	case "app_artifact.revoke":
		return DetailTrustChanged
	case "app_artifact.policy_update":
		return DetailPolicyUpdated
	}
	return "App Artifact Changed"
}

// Detail is an event's detail: the audit row, its id again as event_id (the
// id consumers dedupe on), and the artifact after the change.
type Detail struct {
	*lifecycle.AuditEvent
	EventID  string             `json:"event_id"`
	Artifact *artifact.Artifact `json:"artifact"`
}

// API is the part of the EventBridge client the publisher uses.
type API interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, opts ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Publisher relays stream records to the bus.
type Publisher struct {
	API     API
	BusName string
	Logger  *slog.Logger
	// MaxAttempts bounds resends of failed entries within one invocation
	// (default 3); what still fails is reported for the stream to retry.
	MaxAttempts int
	Sleep       func(ctx context.Context, attempt int)
}

type pending struct {
	seq   string
	entry ebtypes.PutEventsRequestEntry
}

// Handle is the Lambda entry point for a batch of stream records.
func (p *Publisher) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var resp events.DynamoDBEventResponse
	var todo []pending
	for _, rec := range ev.Records {
		if rec.EventName == "REMOVE" || !dynamo.IsAuditImage(rec.Change.NewImage) {
			continue
		}
		entry, err := p.entry(rec.Change.NewImage)
		if err != nil {
			// A row that cannot be read is a defect; it stays in the stream
			// (and then the on-failure destination) rather than vanishing.
			p.Logger.ErrorContext(ctx, "undecodable audit row", "sequence_number", rec.Change.SequenceNumber, "error", err.Error())
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
			continue
		}
		todo = append(todo, pending{seq: rec.Change.SequenceNumber, entry: entry})
	}
	for i := 0; i < len(todo); i += maxEntries {
		chunk := todo[i:min(i+maxEntries, len(todo))]
		for _, f := range p.send(ctx, chunk) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: f.seq})
		}
	}
	published := len(todo) - len(resp.BatchItemFailures)
	p.Logger.InfoContext(ctx, "published", "records", len(ev.Records), "events", published, "failed", len(resp.BatchItemFailures))
	return resp, nil
}

func (p *Publisher) entry(img map[string]events.DynamoDBAttributeValue) (ebtypes.PutEventsRequestEntry, error) {
	audit, after, err := dynamo.DecodeAuditImage(img)
	if err != nil {
		return ebtypes.PutEventsRequestEntry{}, err
	}
	detail, err := json.Marshal(Detail{AuditEvent: audit, EventID: audit.AuditID, Artifact: after})
	if err != nil {
		return ebtypes.PutEventsRequestEntry{}, fmt.Errorf("publisher: %w", err)
	}
	entry := ebtypes.PutEventsRequestEntry{
		Source: aws.String(Source), DetailType: aws.String(DetailType(audit)), Detail: aws.String(string(detail)),
		EventBusName: aws.String(p.BusName), Time: aws.Time(time.Time(audit.OccurredAt)),
	}
	if audit.ArtifactID != nil {
		entry.Resources = []string{"gpuaas:app-artifact:" + audit.ProjectID + "/" + *audit.ArtifactID}
	}
	return entry, nil
}

// send puts chunk, resending the entries that fail, and returns those that
// still fail after MaxAttempts.
func (p *Publisher) send(ctx context.Context, chunk []pending) []pending {
	attempts := p.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	for attempt := 0; ; attempt++ {
		in := &eventbridge.PutEventsInput{}
		for _, c := range chunk {
			in.Entries = append(in.Entries, c.entry)
		}
		out, err := p.API.PutEvents(ctx, in)
		var failed []pending
		switch {
		case err != nil:
			p.Logger.WarnContext(ctx, "PutEvents failed", "entries", len(chunk), "attempt", attempt+1, "error", err.Error())
			failed = chunk
		case out.FailedEntryCount > 0:
			for i, r := range out.Entries {
				if r.ErrorCode != nil && i < len(chunk) {
					p.Logger.WarnContext(ctx, "PutEvents entry failed", "error_code", aws.ToString(r.ErrorCode), "attempt", attempt+1)
					failed = append(failed, chunk[i])
				}
			}
		}
		if len(failed) == 0 || attempt+1 >= attempts || ctx.Err() != nil {
			return failed
		}
		chunk = failed
		p.sleep(ctx, attempt)
	}
}

func (p *Publisher) sleep(ctx context.Context, attempt int) {
	if p.Sleep != nil {
		p.Sleep(ctx, attempt)
		return
	}
	t := time.NewTimer(time.Duration(50<<attempt) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
