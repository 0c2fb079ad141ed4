package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// part says what a transaction item is for, to read its cancellation reason.
type part int

const (
	partIdem part = iota
	partProject
	partDigest
	partAppVersion
	partNewArtifact
	partIntent
	partArtifact
	partNewIntent
	partIntentRef
	partSourceBlock
	partPolicy
	partAudit
)

type txn struct {
	table string
	items []types.TransactWriteItem
	parts []part
}

func (x *txn) add(p part, it types.TransactWriteItem) {
	x.items = append(x.items, it)
	x.parts = append(x.parts, p)
}

func (x *txn) update(p part, k av, upd expression.UpdateBuilder, cond expression.ConditionBuilder) error {
	e, err := expression.NewBuilder().WithUpdate(upd).WithCondition(cond).Build()
	if err != nil {
		return err
	}
	for _, v := range e.Values() {
		if m, ok := v.(*types.AttributeValueMemberM); ok {
			pruneEmpty(m.Value)
		}
	}
	x.add(p, types.TransactWriteItem{Update: &types.Update{
		TableName: aws.String(x.table), Key: k, UpdateExpression: e.Update(), ConditionExpression: e.Condition(),
		ExpressionAttributeNames: e.Names(), ExpressionAttributeValues: e.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	return nil
}

func (x *txn) put(p part, item any, cond expression.ConditionBuilder) error {
	m, err := attributevalue.MarshalMap(item)
	if err != nil {
		return err
	}
	pruneEmpty(m)
	e, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return err
	}
	x.add(p, types.TransactWriteItem{Put: &types.Put{
		TableName: aws.String(x.table), Item: m, ConditionExpression: e.Condition(),
		ExpressionAttributeNames: e.Names(), ExpressionAttributeValues: e.Values(),
	}})
	return nil
}

func (x *txn) check(p part, k av, cond expression.ConditionBuilder) error {
	e, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return err
	}
	x.add(p, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
		TableName: aws.String(x.table), Key: k, ConditionExpression: e.Condition(),
		ExpressionAttributeNames: e.Names(), ExpressionAttributeValues: e.Values(),
	}})
	return nil
}

// policy replaces the project's policy if its revision is still the one
// read, claiming the project if unowned, and keeps one block item per
// refused source type for registration to check.
func (x *txn) policy(pu *lifecycle.PolicyUpdate) error {
	u := expression.UpdateBuilder{}
	set(&u, "entity", entityProject)
	set(&u, "project_id", pu.ProjectID)
	set(&u, "channel_index", "|")
	u = u.Set(expression.Name("org_id"), expression.IfNotExists(expression.Name("org_id"), expression.Value(pu.OrgID)))
	u = u.Set(expression.Name("created_at"), expression.IfNotExists(expression.Name("created_at"), expression.Value(pu.UpdatedAt.UTC())))
	set(&u, "policy", pu.Policy)
	set(&u, "policy_revision", pu.Revision)
	set(&u, "policy_updated_at", pu.UpdatedAt.UTC())
	set(&u, "policy_updated_by", pu.UpdatedBy)
	cond := expression.AttributeNotExists(expression.Name("org_id")).And(expression.AttributeNotExists(expression.Name("policy_revision")))
	if pu.ExpectRevision > 0 {
		cond = expression.Name("org_id").Equal(expression.Value(pu.OrgID)).
			And(expression.Name("policy_revision").Equal(expression.Value(pu.ExpectRevision)))
	} else {
		cond = cond.Or(expression.Name("org_id").Equal(expression.Value(pu.OrgID)).And(expression.AttributeNotExists(expression.Name("policy_revision"))))
	}
	if err := x.update(partPolicy, keyOf(projectPK(pu.ProjectID), skProject), u, cond); err != nil {
		return err
	}
	for _, st := range []artifact.SourceType{artifact.SourcePlatformPush, artifact.SourcePullThroughCache} {
		k := keyOf(sourceBlockPK(pu.ProjectID, st), skGuard)
		if pu.Policy.AllowsSource(st) {
			x.add(partSourceBlock, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(x.table), Key: k}})
			continue
		}
		item := map[string]types.AttributeValue{
			attrPK: k[attrPK], attrSK: k[attrSK], "entity": &types.AttributeValueMemberS{Value: entityGuard},
			"source_type": &types.AttributeValueMemberS{Value: string(st)},
		}
		x.add(partSourceBlock, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(x.table), Item: item}})
	}
	return nil
}

func notExists() expression.ConditionBuilder {
	return expression.AttributeNotExists(expression.Name(attrPK))
}

func set(u *expression.UpdateBuilder, name string, v any) {
	*u = u.Set(expression.Name(name), expression.Value(v))
}

// build lays out m as one TransactWriteItems. The idempotency record comes
// first so that, when several items fail, the one reported (DynamoDB Local
// engines report only the first) is the one that decides a replay.
func (t *Table) build(m *lifecycle.Mutation) (*txn, error) {
	x := &txn{table: t.name}
	now := m.Now.Unix()

	// The idempotency record is an Update, not a Put: a failed Update returns
	// the stored record (ALL_OLD) on every engine, so a duplicate replays
	// without another read. Expiry is part of the condition; TTL deletion is
	// only housekeeping.
	if r := m.Idem; r != nil {
		if err := x.idempotency(r, now); err != nil {
			return nil, err
		}
	}
	if err := t.buildChanges(x, m, now); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *txn) idempotency(r *lifecycle.IdemRecord, now int64) error {
	u := expression.UpdateBuilder{}
	set(&u, "entity", entityIdem)
	set(&u, "project_id", r.ProjectID)
	set(&u, "principal_id", r.PrincipalID)
	set(&u, "idempotency_key", r.Key)
	set(&u, "fingerprint", r.Fingerprint)
	set(&u, "status_code", r.Status)
	set(&u, "body", r.Body)
	set(&u, "artifact_id", r.ArtifactID)
	set(&u, "created_at", r.CreatedAt.UTC())
	set(&u, "expires_at", r.ExpiresAt.Unix())
	set(&u, "ttl", r.ExpiresAt.Unix())
	cond := notExists().Or(expression.Name("expires_at").LessThanEqual(expression.Value(now)))
	return x.update(partIdem, keyOf(idemPK(r.IdemScope), skIdem), u, cond)
}

func (t *Table) buildChanges(x *txn, m *lifecycle.Mutation, now int64) error {

	if p := m.ClaimProject; p != nil {
		u := expression.UpdateBuilder{}
		set(&u, "entity", entityProject)
		set(&u, "project_id", p.ProjectID)
		u = u.Set(expression.Name("org_id"), expression.IfNotExists(expression.Name("org_id"), expression.Value(p.OrgID)))
		u = u.Set(expression.Name("created_at"), expression.IfNotExists(expression.Name("created_at"), expression.Value(m.Now.UTC())))
		// The project item shares the artifacts' list query; minidyn fails
		// contains() on a missing attribute, so it carries an empty index.
		set(&u, "channel_index", "|")
		cond := expression.AttributeNotExists(expression.Name("org_id")).Or(expression.Name("org_id").Equal(expression.Value(p.OrgID)))
		if err := x.update(partProject, keyOf(projectPK(p.ProjectID), skProject), u, cond); err != nil {
			return err
		}
	}

	if a := m.NewArtifact; a != nil {
		for _, g := range []struct {
			p  part
			pk string
		}{{partDigest, digestPK(a.ProjectID, a.Digest)}, {partAppVersion, appVersionPK(a.ProjectID, a.AppSlug, a.AppVersion)}} {
			u := expression.UpdateBuilder{}
			set(&u, "entity", entityGuard)
			set(&u, "artifact_id", a.ArtifactID)
			if err := x.update(g.p, keyOf(g.pk, skGuard), u, notExists()); err != nil {
				return err
			}
		}
		if err := x.put(partNewArtifact, toArtifactItem(a), notExists()); err != nil {
			return err
		}
		if err := x.check(partSourceBlock, keyOf(sourceBlockPK(a.ProjectID, a.SourceType), skGuard), notExists()); err != nil {
			return err
		}
		if id := m.FulfilIntent; id != nil {
			u := expression.UpdateBuilder{}
			set(&u, "status", artifact.IntentFulfilled)
			set(&u, "artifact_id", a.ArtifactID)
			cond := expression.AttributeExists(expression.Name(attrPK)).
				And(expression.Name("status").Equal(expression.Value(artifact.IntentOpen)),
					expression.Name("expires_epoch").GreaterThan(expression.Value(now)),
					expression.Name("app_slug").Equal(expression.Value(a.AppSlug)),
					expression.Name("app_version").Equal(expression.Value(a.AppVersion)),
					expression.Name("artifact_kind").Equal(expression.Value(a.Kind)),
					expression.Name("source_type").Equal(expression.Value(a.SourceType)))
			if err := x.update(partIntent, keyOf(intentPK(a.ProjectID), *id), u, cond); err != nil {
				return err
			}
		}
	}

	revision := expression.Name("revision").Equal(expression.Value(m.ExpectRevision))
	if a := m.UpdateArtifact; a != nil {
		if err := x.put(partArtifact, toArtifactItem(a), revision); err != nil {
			return err
		}
	}
	if a := m.CheckArtifact; a != nil {
		if err := x.check(partArtifact, keyOf(projectPK(a.ProjectID), artifactSK(a.ArtifactID)), revision); err != nil {
			return err
		}
	}

	if p := m.NewIntent; p != nil {
		if err := x.put(partNewIntent, toIntentItem(p), notExists()); err != nil {
			return err
		}
		if err := x.put(partIntentRef, toIntentRefItem(p), notExists()); err != nil {
			return err
		}
	}
	if pu := m.UpdatePolicy; pu != nil {
		if err := x.policy(pu); err != nil {
			return err
		}
	}
	if e := m.Audit; e != nil {
		after := m.NewArtifact
		if m.UpdateArtifact != nil {
			after = m.UpdateArtifact
		}
		if err := x.put(partAudit, toAuditItem(e, after), notExists()); err != nil {
			return err
		}
	}
	return nil
}

// Commit implements lifecycle.Store.
func (t *Table) Commit(ctx context.Context, m *lifecycle.Mutation) error {
	x, err := t.build(m)
	if err != nil {
		return artifact.Internal(fmt.Errorf("dynamo.Commit: %w", err))
	}
	_, err = t.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: x.items})
	if err == nil {
		return nil
	}
	tce, ok := errors.AsType[*types.TransactionCanceledException](err)
	if !ok {
		return translate("dynamo.Commit", err)
	}
	return t.cancelled(x, m, tce)
}

// cancelled turns the first flagged cancellation reason into a lifecycle error.
func (t *Table) cancelled(x *txn, m *lifecycle.Mutation, tce *types.TransactionCanceledException) error {
	for i, r := range tce.CancellationReasons {
		code := aws.ToString(r.Code)
		if code == "" || code == "None" || i >= len(x.parts) {
			continue
		}
		switch code {
		case "ConditionalCheckFailed":
			return conditionFailed(x.parts[i], m, r.Item)
		case "TransactionConflict":
			return lifecycle.ErrRevisionChanged
		case "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
			return artifact.Unavailable("throttled", tce)
		default:
			return artifact.Internal(fmt.Errorf("dynamo.Commit: item %d cancelled: %s: %w", i, code, tce))
		}
	}
	return artifact.Internal(fmt.Errorf("dynamo.Commit: cancelled without a reason: %w", tce))
}

func conditionFailed(p part, m *lifecycle.Mutation, old av) error {
	switch p {
	case partIdem:
		rec, err := decodeIdem(old)
		if err != nil {
			return err
		}
		if rec == nil {
			// The engine did not return the winner; the caller reads again.
			return lifecycle.ErrRevisionChanged
		}
		return &lifecycle.IdemExistsError{Record: rec}
	case partProject:
		return lifecycle.ErrOrgMismatch
	case partDigest, partAppVersion:
		var g struct {
			ArtifactID string `dynamodbav:"artifact_id"`
		}
		_ = attributevalue.UnmarshalMap(old, &g)
		field := "digest"
		if p == partAppVersion {
			field = "app_version"
		}
		return &lifecycle.DuplicateError{Field: field, ExistingArtifactID: g.ArtifactID}
	case partIntent:
		if len(old) == 0 {
			return &lifecycle.IntentError{}
		}
		var it intentItem
		if err := attributevalue.UnmarshalMap(old, &it); err != nil {
			return artifact.Internal(fmt.Errorf("dynamo.Commit: intent: %w", err))
		}
		return &lifecycle.IntentError{Intent: it.intent()}
	case partArtifact:
		return lifecycle.ErrRevisionChanged
	case partSourceBlock:
		return lifecycle.ErrSourceNotAllowed
	case partPolicy:
		var p struct {
			OrgID string `dynamodbav:"org_id"`
		}
		_ = attributevalue.UnmarshalMap(old, &p)
		if p.OrgID != "" && p.OrgID != m.UpdatePolicy.OrgID {
			return lifecycle.ErrOrgMismatch
		}
		return lifecycle.ErrRevisionChanged
	}
	return artifact.Internal(fmt.Errorf("dynamo.Commit: unexpected condition failure on part %d", p))
}

// pruneEmpty drops empty lists and maps at any depth. An absent attribute
// reads back as empty, and the local engine (minidyn) mis-stores empty L and
// M values, so they are never written; see doc/adr/0003.
func pruneEmpty(m map[string]types.AttributeValue) {
	for k, v := range m {
		switch x := v.(type) {
		case *types.AttributeValueMemberL:
			if len(x.Value) == 0 {
				delete(m, k)
				continue
			}
			for _, e := range x.Value {
				if mm, ok := e.(*types.AttributeValueMemberM); ok {
					pruneEmpty(mm.Value)
				}
			}
		case *types.AttributeValueMemberM:
			pruneEmpty(x.Value)
			if len(x.Value) == 0 {
				delete(m, k)
			}
		}
	}
}
