package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// API is the part of the DynamoDB client the store uses.
type API interface {
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Table is the Store over one DynamoDB table.
type Table struct {
	api  API
	name string
}

var _ lifecycle.Store = (*Table)(nil)

// New returns the store for table name.
func New(api API, name string) *Table { return &Table{api: api, name: name} }

type av = map[string]types.AttributeValue

func keyOf(pk, sk string) av {
	return av{attrPK: &types.AttributeValueMemberS{Value: pk}, attrSK: &types.AttributeValueMemberS{Value: sk}}
}

// batchGet reads keys consistently in one call; the rare unprocessed keys
// are asked again (each retry is one more round trip, counted as such).
func (t *Table) batchGet(ctx context.Context, keys []av) (map[string]av, error) {
	out := map[string]av{}
	pending := keys
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 5 {
			return nil, artifact.Unavailable("throttled", errors.New("dynamo.batchGet: unprocessed keys after 5 attempts"))
		}
		res, err := t.api.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{t.name: {Keys: pending, ConsistentRead: aws.Bool(true)}},
		})
		if err != nil {
			return nil, translate("dynamo.batchGet", err)
		}
		for _, item := range res.Responses[t.name] {
			pk, _ := item[attrPK].(*types.AttributeValueMemberS)
			sk, _ := item[attrSK].(*types.AttributeValueMemberS)
			if pk != nil && sk != nil {
				out[pk.Value+"|"+sk.Value] = item
			}
		}
		pending = res.UnprocessedKeys[t.name].Keys
	}
	return out, nil
}

func decodeArtifact(item av) (*artifact.Artifact, error) {
	if item == nil {
		return nil, nil
	}
	var it artifactItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.decodeArtifact: %w", err))
	}
	return it.artifact(), nil
}

func decodeProject(item av) (*lifecycle.Project, error) {
	if item == nil {
		return nil, nil
	}
	var it projectItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.decodeProject: %w", err))
	}
	return &lifecycle.Project{ProjectID: it.ProjectID, OrgID: it.OrgID, Policy: normalizePolicy(it.Policy),
		PolicyRevision: it.PolicyRevision, PolicyUpdatedAt: it.PolicyUpdatedAt, PolicyUpdatedBy: it.PolicyUpdatedBy}, nil
}

func decodeIdem(item av) (*lifecycle.IdemRecord, error) {
	if item == nil {
		return nil, nil
	}
	var it idemItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.decodeIdem: %w", err))
	}
	return it.record(), nil
}

// GetArtifact implements lifecycle.Store.
func (t *Table) GetArtifact(ctx context.Context, projectID, artifactID string) (*artifact.Artifact, *lifecycle.Project, error) {
	ak, pk := keyOf(projectPK(projectID), artifactSK(artifactID)), keyOf(projectPK(projectID), skProject)
	got, err := t.batchGet(ctx, []av{ak, pk})
	if err != nil {
		return nil, nil, err
	}
	a, err := decodeArtifact(got[projectPK(projectID)+"|"+artifactSK(artifactID)])
	if err != nil {
		return nil, nil, err
	}
	p, err := decodeProject(got[projectPK(projectID)+"|"+skProject])
	return a, p, err
}

// LoadForMutation implements lifecycle.Store.
func (t *Table) LoadForMutation(ctx context.Context, projectID, artifactID string, idem lifecycle.IdemScope) (*lifecycle.MutationView, error) {
	ipk := idemPK(idem)
	got, err := t.batchGet(ctx, []av{
		keyOf(projectPK(projectID), artifactSK(artifactID)),
		keyOf(projectPK(projectID), skProject),
		keyOf(ipk, skIdem),
	})
	if err != nil {
		return nil, err
	}
	v := &lifecycle.MutationView{}
	if v.Artifact, err = decodeArtifact(got[projectPK(projectID)+"|"+artifactSK(artifactID)]); err != nil {
		return nil, err
	}
	if v.Project, err = decodeProject(got[projectPK(projectID)+"|"+skProject]); err != nil {
		return nil, err
	}
	if v.Idem, err = decodeIdem(got[ipk+"|"+skIdem]); err != nil {
		return nil, err
	}
	return v, nil
}

// LoadProject implements lifecycle.Store.
func (t *Table) LoadProject(ctx context.Context, projectID string, idem *lifecycle.IdemScope) (*lifecycle.Project, *lifecycle.IdemRecord, error) {
	keys := []av{keyOf(projectPK(projectID), skProject)}
	if idem != nil {
		keys = append(keys, keyOf(idemPK(*idem), skIdem))
	}
	got, err := t.batchGet(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	p, err := decodeProject(got[projectPK(projectID)+"|"+skProject])
	if err != nil || idem == nil {
		return p, nil, err
	}
	rec, err := decodeIdem(got[idemPK(*idem)+"|"+skIdem])
	return p, rec, err
}

// GetIntent implements lifecycle.Store.
func (t *Table) GetIntent(ctx context.Context, projectID, intentID string) (*artifact.PublishIntent, *lifecycle.Project, error) {
	got, err := t.batchGet(ctx, []av{keyOf(intentPK(projectID), intentID), keyOf(projectPK(projectID), skProject)})
	if err != nil {
		return nil, nil, err
	}
	var intent *artifact.PublishIntent
	if item := got[intentPK(projectID)+"|"+intentID]; item != nil {
		var it intentItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return nil, nil, artifact.Internal(fmt.Errorf("dynamo.GetIntent: %w", err))
		}
		intent = it.intent()
	}
	p, err := decodeProject(got[projectPK(projectID)+"|"+skProject])
	return intent, p, err
}

// IntentsFor implements lifecycle.Store: a consistent Query of the
// intents' references for the repository and tag, newest first, then one
// consistent BatchGetItem of the intents they point at (two round trips:
// this is the asynchronous registrar, not a request).
func (t *Table) IntentsFor(ctx context.Context, repositoryName, tag string) ([]*artifact.PublishIntent, error) {
	expr, err := expression.NewBuilder().WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(IntentRefKey(repositoryName, tag)))).Build()
	if err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.IntentsFor: %w", err))
	}
	out, err := t.api.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(t.name), KeyConditionExpression: expr.KeyCondition(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
		ScanIndexForward: aws.Bool(false), ConsistentRead: aws.Bool(true), Limit: aws.Int32(20),
	})
	if err != nil {
		return nil, translate("dynamo.IntentsFor", err)
	}
	refs := make([]intentRefItem, 0, len(out.Items))
	keys := make([]av, 0, len(out.Items))
	for _, item := range out.Items {
		var ref intentRefItem
		if err := attributevalue.UnmarshalMap(item, &ref); err != nil {
			return nil, artifact.Internal(fmt.Errorf("dynamo.IntentsFor: %w", err))
		}
		refs = append(refs, ref)
		keys = append(keys, keyOf(intentPK(ref.ProjectID), ref.IntentID))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	got, err := t.batchGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	intents := make([]*artifact.PublishIntent, 0, len(refs))
	for _, ref := range refs {
		item := got[intentPK(ref.ProjectID)+"|"+ref.IntentID]
		if item == nil {
			continue
		}
		var it intentItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return nil, artifact.Internal(fmt.Errorf("dynamo.IntentsFor: %w", err))
		}
		intents = append(intents, it.intent())
	}
	return intents, nil
}

// ListArtifacts implements lifecycle.Store: one Query over the project's
// partition, newest first. The project item sorts after every artifact, so
// the first page also brings the project's owner. Filters are applied by
// DynamoDB; the page reads ahead so a filtered page is usually full, and
// returns at most q.Limit artifacts.
func (t *Table) ListArtifacts(ctx context.Context, projectID string, q lifecycle.ListQuery) (*lifecycle.ListResult, error) {
	kc := expression.Key(attrPK).Equal(expression.Value(projectPK(projectID)))
	b := expression.NewBuilder().WithKeyCondition(kc)
	var conds []expression.ConditionBuilder
	add := func(name, v string) {
		if v != "" {
			conds = append(conds, expression.Name(name).Equal(expression.Value(v)))
		}
	}
	add("lifecycle_state", q.LifecycleState)
	add("trust_state", q.TrustState)
	add("app_slug", q.AppSlug)
	add("app_version", q.AppVersion)
	if q.Channel != "" {
		conds = append(conds, expression.Name("channel_index").Contains("|"+q.Channel+"|"))
	}
	readAhead := int32(q.Limit + 2)
	if len(conds) > 0 {
		f := conds[0]
		if len(conds) > 1 {
			f = expression.And(conds[0], conds[1], conds[2:]...)
		}
		// The project item passes every filter. By its entity: DynamoDB
		// refuses a filter on a key attribute (SK), though minidyn allows it.
		b = b.WithFilter(f.Or(expression.Name(attrEntity).Equal(expression.Value(entityProject))))
		readAhead = int32(min(q.Limit*5+2, 500))
	}
	expr, err := b.Build()
	if err != nil {
		return nil, artifact.Internal(fmt.Errorf("dynamo.ListArtifacts: %w", err))
	}
	in := &dynamodb.QueryInput{
		TableName: aws.String(t.name), KeyConditionExpression: expr.KeyCondition(), FilterExpression: expr.Filter(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
		ScanIndexForward: aws.Bool(false), ConsistentRead: aws.Bool(true), Limit: aws.Int32(readAhead),
	}
	if q.AfterID != "" {
		in.ExclusiveStartKey = keyOf(projectPK(projectID), artifactSK(q.AfterID))
	}
	out, err := t.api.Query(ctx, in)
	if err != nil {
		return nil, translate("dynamo.ListArtifacts", err)
	}
	res := &lifecycle.ListResult{More: len(out.LastEvaluatedKey) > 0}
	if res.More {
		// Where DynamoDB stopped reading, whether or not that item matched.
		sk, _ := out.LastEvaluatedKey[attrSK].(*types.AttributeValueMemberS)
		if sk == nil || !strings.HasPrefix(sk.Value, artifactSKPfx) {
			res.More = false // only the project item was read: nothing follows it but artifacts read already
		} else {
			res.Last = strings.TrimPrefix(sk.Value, artifactSKPfx)
		}
	}
	for _, item := range out.Items {
		if sk, _ := item[attrSK].(*types.AttributeValueMemberS); sk != nil && sk.Value == skProject {
			if res.Project, err = decodeProject(item); err != nil {
				return nil, err
			}
			continue
		}
		if len(res.Items) == q.Limit {
			res.More, res.Last = true, res.Items[len(res.Items)-1].ArtifactID
			break
		}
		a, err := decodeArtifact(item)
		if err != nil {
			return nil, err
		}
		res.Items = append(res.Items, a)
	}
	return res, nil
}
