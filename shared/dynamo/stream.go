package dynamo

import (
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
)

// FromStreamImage converts a stream record's image to SDK attribute values.
func FromStreamImage(img map[string]events.DynamoDBAttributeValue) map[string]types.AttributeValue {
	out := make(map[string]types.AttributeValue, len(img))
	for k, v := range img {
		out[k] = fromStream(v)
	}
	return out
}

func fromStream(v events.DynamoDBAttributeValue) types.AttributeValue {
	switch v.DataType() {
	case events.DataTypeString:
		return &types.AttributeValueMemberS{Value: v.String()}
	case events.DataTypeNumber:
		return &types.AttributeValueMemberN{Value: v.Number()}
	case events.DataTypeBinary:
		return &types.AttributeValueMemberB{Value: v.Binary()}
	case events.DataTypeBoolean:
		return &types.AttributeValueMemberBOOL{Value: v.Boolean()}
	case events.DataTypeNull:
		return &types.AttributeValueMemberNULL{Value: true}
	case events.DataTypeStringSet:
		return &types.AttributeValueMemberSS{Value: v.StringSet()}
	case events.DataTypeNumberSet:
		return &types.AttributeValueMemberNS{Value: v.NumberSet()}
	case events.DataTypeBinarySet:
		return &types.AttributeValueMemberBS{Value: v.BinarySet()}
	case events.DataTypeList:
		l := v.List()
		out := make([]types.AttributeValue, len(l))
		for i, e := range l {
			out[i] = fromStream(e)
		}
		return &types.AttributeValueMemberL{Value: out}
	case events.DataTypeMap:
		return &types.AttributeValueMemberM{Value: FromStreamImage(v.Map())}
	}
	return &types.AttributeValueMemberNULL{Value: true}
}

// IsAuditImage reports whether a stream image is an audit row.
func IsAuditImage(img map[string]events.DynamoDBAttributeValue) bool {
	e, ok := img["entity"]
	return ok && e.DataType() == events.DataTypeString && e.String() == entityAudit
}

// DecodeAuditImage reads an audit row from a stream image, with the
// artifact after the change when the row carries one.
func DecodeAuditImage(img map[string]events.DynamoDBAttributeValue) (*lifecycle.AuditEvent, *artifact.Artifact, error) {
	var it auditItem
	if err := attributevalue.UnmarshalMap(FromStreamImage(img), &it); err != nil {
		return nil, nil, fmt.Errorf("dynamo.DecodeAuditImage: %w", err)
	}
	if it.Entity != entityAudit || it.AuditID == "" {
		return nil, nil, fmt.Errorf("dynamo.DecodeAuditImage: not an audit row")
	}
	var a *artifact.Artifact
	if it.Artifact != nil {
		a = it.Artifact.artifact()
	}
	return it.event(), a, nil
}
