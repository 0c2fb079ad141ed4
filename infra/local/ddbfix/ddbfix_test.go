package ddbfix_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	miniserver "github.com/truora/minidyn/server"

	"github.com/gpuaas/app-artifacts/infra/local/ddbfix"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// engine is minidyn behind ddbfix on loopback, with the template's table.
func engine(t *testing.T) (*dynamodb.Client, string) {
	t.Helper()
	tmpl, err := samtemplate.LoadRepo(nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := tmpl.CreateTableInput("ArtifactsTable", "fix")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ddbfix.Wrap(miniserver.NewServer(), ddbfix.KeysOf(in)))
	t.Cleanup(srv.Close)
	c := dynamodb.NewFromConfig(aws.Config{Region: "us-east-1", HTTPClient: awshttp.NewBuildableClient(),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	if _, err := c.CreateTable(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	return c, "fix"
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// Three partitions of ten items; in B, every third item is "red".
func fill(t *testing.T, c *dynamodb.Client, table string) {
	t.Helper()
	for _, pk := range []string{"A", "B", "C"} {
		for i := range 10 {
			color := "blue"
			if pk == "B" && i%3 == 0 {
				color = "red"
			}
			if _, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
				"PK": s(pk), "SK": s(fmt.Sprintf("%02d", i)), "color": s(color), "GSI1PK": s("G" + pk), "GSI1SK": s(fmt.Sprintf("%02d", i)),
			}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFilteredPagesAsDynamoDB: each page evaluates Limit items of the queried
// partition, returns the matches among them, and its LastEvaluatedKey is the
// last item evaluated, so following it visits the partition exactly once.
func TestFilteredPagesAsDynamoDB(t *testing.T) {
	c, table := engine(t)
	fill(t, c, table)
	for _, index := range []string{"", "GSI1"} {
		t.Run("index="+index, func(t *testing.T) {
			pk, pkName := "B", "PK"
			if index != "" {
				pk, pkName = "GB", "GSI1PK"
			}
			var pages [][]string
			var start map[string]types.AttributeValue
			for range 10 {
				in := &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("#pk = :pk"),
					FilterExpression:          aws.String("#c = :red"),
					ExpressionAttributeNames:  map[string]string{"#pk": pkName, "#c": "color"},
					ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pk), ":red": s("red")},
					ScanIndexForward:          aws.Bool(false), Limit: aws.Int32(4), ExclusiveStartKey: start}
				if index != "" {
					in.IndexName = aws.String(index)
				}
				out, err := c.Query(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				var page []string
				for _, it := range out.Items {
					page = append(page, it["SK"].(*types.AttributeValueMemberS).Value)
				}
				pages = append(pages, page)
				if out.ScannedCount != 4 && len(out.LastEvaluatedKey) > 0 {
					t.Fatalf("scanned %d, want 4 on a page that has more", out.ScannedCount)
				}
				if len(out.LastEvaluatedKey) == 0 {
					break
				}
				if got := out.LastEvaluatedKey["PK"].(*types.AttributeValueMemberS).Value; got != "B" {
					t.Fatalf("LastEvaluatedKey in partition %s", got)
				}
				if _, ok := out.LastEvaluatedKey["GSI1PK"]; ok != (index != "") {
					t.Fatalf("LastEvaluatedKey %v: index keys present=%v on index %q", out.LastEvaluatedKey, ok, index)
				}
				start = out.LastEvaluatedKey
			}
			// B's items 09..00 newest first in pages of four evaluated: 09
			// 08 07 06 | 05 04 03 02 | 01 00; red are 09, 06, 03, 00.
			if diff := cmp.Diff([][]string{{"09", "06"}, {"03"}, {"00"}}, pages); diff != "" {
				t.Fatalf("pages (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKeyAttributeInFilterIsRefused: as on DynamoDB.
func TestKeyAttributeInFilterIsRefused(t *testing.T) {
	c, table := engine(t)
	for _, f := range []struct{ expr, index string }{{"SK = :v", ""}, {"#s = :v", ""}, {"GSI1SK = :v", "GSI1"}} {
		in := &dynamodb.QueryInput{TableName: aws.String(table), KeyConditionExpression: aws.String("PK = :pk"),
			FilterExpression:          aws.String(f.expr),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s("B"), ":v": s("x")}}
		if strings.Contains(f.expr, "#s") {
			in.ExpressionAttributeNames = map[string]string{"#s": "SK"}
		}
		if f.index != "" {
			in.IndexName, in.KeyConditionExpression = aws.String(f.index), aws.String("GSI1PK = :pk")
		}
		_, err := c.Query(context.Background(), in)
		if err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "non-primary key attributes") {
			t.Fatalf("filter %q on %q: %v", f.expr, f.index, err)
		}
	}
	// A base-table key is an ordinary attribute on an index.
	_, err := c.Query(context.Background(), &dynamodb.QueryInput{TableName: aws.String(table), IndexName: aws.String("GSI1"),
		KeyConditionExpression: aws.String("GSI1PK = :pk"), FilterExpression: aws.String("SK = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s("GB"), ":v": s("x")}})
	if err != nil {
		t.Fatalf("table key in an index query's filter: %v", err)
	}
}
