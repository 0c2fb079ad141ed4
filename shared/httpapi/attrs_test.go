package httpapi_test

import "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

type any2 = types.AttributeValue

func attrS(v types.AttributeValue) string {
	if s, ok := v.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}
