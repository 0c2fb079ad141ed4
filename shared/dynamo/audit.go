package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// AuditEvents implements lifecycle.Store: by artifact on GSI1, by
// correlation id on GSI2, otherwise the project's audit partition; newest
// first; action as a filter (the page reads ahead so it is usually full).
func (t *Table) AuditEvents(ctx context.Context, projectID string, q lifecycle.AuditQuery) (*lifecycle.AuditPage, error) {
	index, pkName, skName, pk := "", attrPK, attrSK, auditPK(projectID)
	switch {
	case q.CorrelationID != "":
		index, pkName, skName, pk = "GSI2", "GSI2PK", "GSI2SK", AuditByCorrelationKey(projectID, q.CorrelationID)
	case q.ArtifactID != "":
		index, pkName, skName, pk = "GSI1", "GSI1PK", "GSI1SK", AuditByArtifactKey(projectID, q.ArtifactID)
	}
	b := expression.NewBuilder().WithKeyCondition(expression.Key(pkName).Equal(expression.Value(pk)))
	var conds []expression.ConditionBuilder
	if q.Action != "" {
		conds = append(conds, expression.Name("action").Equal(expression.Value(q.Action)))
	}
	if q.CorrelationID != "" && q.ArtifactID != "" {
		conds = append(conds, expression.Name("artifact_id").Equal(expression.Value(q.ArtifactID)))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	readAhead := int32(limit + 1)
	if len(conds) > 0 {
		f := conds[0]
		if len(conds) > 1 {
			f = expression.And(conds[0], conds[1])
		}
		b = b.WithFilter(f)
		readAhead = int32(min(limit*5+1, 500))
	}
	expr, err := b.Build()
	if err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.AuditEvents: %w", err))
	}
	in := &dynamodb.QueryInput{
		TableName: aws.String(t.name), KeyConditionExpression: expr.KeyCondition(), FilterExpression: expr.Filter(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
		ScanIndexForward: aws.Bool(false), Limit: aws.Int32(readAhead),
	}
	if index != "" {
		in.IndexName = aws.String(index)
	}
	if q.AfterID != "" {
		// The position of a row on any of the three: its table key and,
		// on an index, its index key.
		start := keyOf(auditPK(projectID), q.AfterID)
		if index != "" {
			start[pkName] = &types.AttributeValueMemberS{Value: pk}
			start[skName] = &types.AttributeValueMemberS{Value: q.AfterID}
		}
		in.ExclusiveStartKey = start
	}
	out, err := t.api.Query(ctx, in)
	if err != nil {
		return nil, translate("dynamo.AuditEvents", err)
	}
	page := &lifecycle.AuditPage{Items: []*lifecycle.AuditEvent{}, More: len(out.LastEvaluatedKey) > 0}
	if sk, _ := out.LastEvaluatedKey[attrSK].(*types.AttributeValueMemberS); sk != nil {
		page.Last = sk.Value // where DynamoDB stopped reading, matched or not
	} else {
		page.More = false
	}
	for _, item := range out.Items {
		if len(page.Items) == limit {
			page.More, page.Last = true, page.Items[len(page.Items)-1].AuditID
			break
		}
		var it auditItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return nil, artifact.Internal(fmt.Errorf("dynamo.AuditEvents: %w", err))
		}
		page.Items = append(page.Items, it.event())
	}
	return page, nil
}

func (it *auditItem) event() *lifecycle.AuditEvent {
	details := it.Details
	if details == nil {
		details = map[string]any{}
	}
	return &lifecycle.AuditEvent{
		AuditID: it.AuditID, Action: it.Action, OrgID: it.OrgID, ProjectID: it.ProjectID, ArtifactID: it.ArtifactID,
		Actor: it.Actor, CorrelationID: it.CorrelationID, TraceID: it.TraceID, IdempotencyKey: it.IdempotencyKey,
		Before: snapshot(it.Before), After: snapshot(it.After), Details: details, OccurredAt: artifact.Timestamp(it.OccurredAt.UTC()),
	}
}

// snapshot restores the empty channel list that storage leaves out.
func snapshot(s *artifact.Snapshot) *artifact.Snapshot {
	if s != nil && s.Channels == nil {
		s.Channels = []string{}
	}
	return s
}
