package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// AuditQuery selects audit rows of a project: by artifact (GSI1), by
// correlation id (GSI2), or all of them (the base table), oldest first.
type AuditQuery struct {
	ArtifactID    string
	CorrelationID string
	Limit         int
}

// AuditEvents reads one page of audit rows in one round trip.
func (t *Table) AuditEvents(ctx context.Context, projectID string, q AuditQuery) ([]*lifecycle.AuditEvent, error) {
	index, pkName, pk := "", attrPK, auditPK(projectID)
	switch {
	case q.ArtifactID != "":
		index, pkName, pk = "GSI1", "GSI1PK", AuditByArtifactKey(projectID, q.ArtifactID)
	case q.CorrelationID != "":
		index, pkName, pk = "GSI2", "GSI2PK", AuditByCorrelationKey(projectID, q.CorrelationID)
	}
	expr, err := expression.NewBuilder().WithKeyCondition(expression.Key(pkName).Equal(expression.Value(pk))).Build()
	if err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.AuditEvents: %w", err))
	}
	in := &dynamodb.QueryInput{
		TableName: aws.String(t.name), KeyConditionExpression: expr.KeyCondition(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	}
	if index != "" {
		in.IndexName = aws.String(index)
	}
	if q.Limit > 0 {
		in.Limit = aws.Int32(int32(q.Limit))
	}
	out, err := t.api.Query(ctx, in)
	if err != nil {
		return nil, translate("dynamo.AuditEvents", err)
	}
	events := make([]*lifecycle.AuditEvent, 0, len(out.Items))
	for _, item := range out.Items {
		var it auditItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return nil, artifact.Internal(fmt.Errorf("dynamo.AuditEvents: %w", err))
		}
		events = append(events, it.event())
	}
	return events, nil
}

func (it *auditItem) event() *lifecycle.AuditEvent {
	details := it.Details
	if details == nil {
		details = map[string]any{}
	}
	return &lifecycle.AuditEvent{
		AuditID: it.AuditID, Action: it.Action, OrgID: it.OrgID, ProjectID: it.ProjectID, ArtifactID: it.ArtifactID,
		Actor: it.Actor, CorrelationID: it.CorrelationID, TraceID: it.TraceID, IdempotencyKey: it.IdempotencyKey,
		Before: snapshot(it.Before), After: snapshot(it.After), Details: details, OccurredAt: it.OccurredAt.UTC(),
	}
}

// snapshot restores the empty channel list that storage leaves out.
func snapshot(s *artifact.Snapshot) *artifact.Snapshot {
	if s != nil && s.Channels == nil {
		s.Channels = []string{}
	}
	return s
}
