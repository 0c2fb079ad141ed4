package cloud_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gpuaas/app-artifacts/infra/local/cloud"
)

func attributevalueUnmarshal(item map[string]types.AttributeValue, out any) error {
	return attributevalue.UnmarshalMap(item, out)
}

func trimHTTP(u string) string { return strings.TrimPrefix(u, "http://") }

// tableDump is every item of the local table as JSON lines, in a stable order.
func tableDump(t *testing.T, st *cloud.Stack) string {
	t.Helper()
	out, err := st.Dynamo.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(cloud.LocalTableName)})
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]string, 0, len(out.Items))
	for _, it := range out.Items {
		var m map[string]any
		if err := attributevalue.UnmarshalMap(it, &m); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m) // map keys marshal sorted
		rows = append(rows, string(b))
	}
	sort.Strings(rows)
	return strings.Join(rows, "\n")
}
