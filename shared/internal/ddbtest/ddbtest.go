package ddbtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	miniserver "github.com/truora/minidyn/server"

	"github.com/gpuaas/app-artifacts/infra/local/ddbfix"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// TableLogicalID is the table resource in template.yaml.
const TableLogicalID = "ArtifactsTable"

// Server is a running minidyn endpoint.
type Server struct {
	Mini   *miniserver.Server
	URL    string
	http   *httptest.Server
	tables atomic.Int64
}

// Start serves minidyn on 127.0.0.1 until tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	mini := miniserver.NewServer()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("ddbtest.Start: %v", err)
	}
	in, err := Template(tb).CreateTableInput(TableLogicalID, "keys")
	if err != nil {
		tb.Fatalf("ddbtest.Start: %v", err)
	}
	// DynamoDB's Query semantics where minidyn's differ (ddbfix).
	hs := httptest.NewUnstartedServer(ddbfix.Wrap(mini, ddbfix.KeysOf(in)))
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	tb.Cleanup(hs.Close)
	return &Server{Mini: mini, URL: hs.URL, http: hs}
}

// Client returns a real DynamoDB client for the server, with extra options
// (API options such as call counters or fault injection).
func (s *Server) Client(opts ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		// Buildable so that AWS_CA_BUNDLE, when set, is honoured like in production.
		HTTPClient: awshttp.NewBuildableClient(),
	}
	all := append([]func(*dynamodb.Options){func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(s.URL) }}, opts...)
	return dynamodb.NewFromConfig(cfg, all...)
}

// Template loads the repository's template.yaml.
func Template(tb testing.TB) *samtemplate.Template {
	tb.Helper()
	t, err := samtemplate.LoadRepo(nil)
	if err != nil {
		tb.Fatalf("ddbtest.Template: %v", err)
	}
	return t
}

// NewTable creates a fresh table shaped like template.yaml's and returns its name.
func (s *Server) NewTable(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("artifacts-%d", s.tables.Add(1))
	in, err := Template(tb).CreateTableInput(TableLogicalID, name)
	if err != nil {
		tb.Fatalf("ddbtest.NewTable: %v", err)
	}
	if _, err := s.Client().CreateTable(context.Background(), in); err != nil {
		tb.Fatalf("ddbtest.NewTable: %v", err)
	}
	return name
}

// Dump returns every item of the table in a canonical JSON form, to compare
// a table before and after a request byte for byte.
func (s *Server) Dump(tb testing.TB, table string) string {
	tb.Helper()
	var rows []string
	var start map[string]types.AttributeValue
	for {
		out, err := s.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ExclusiveStartKey: start})
		if err != nil {
			tb.Fatalf("ddbtest.Dump: %v", err)
		}
		for _, item := range out.Items {
			rows = append(rows, canonical(item))
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	sort.Strings(rows)
	b, _ := json.Marshal(rows)
	return string(b)
}

// Items returns the items whose entity attribute equals entity.
func (s *Server) Items(tb testing.TB, table, entity string) []map[string]types.AttributeValue {
	tb.Helper()
	out, err := s.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		tb.Fatalf("ddbtest.Items: %v", err)
	}
	var items []map[string]types.AttributeValue
	for _, it := range out.Items {
		if e, ok := it["entity"].(*types.AttributeValueMemberS); ok && e.Value == entity {
			items = append(items, it)
		}
	}
	return items
}

func canonical(item map[string]types.AttributeValue) string {
	keys := make([]string, 0, len(item))
	for k := range item {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := "{"
	for _, k := range keys {
		out += fmt.Sprintf("%q:%s,", k, value(item[k]))
	}
	return out + "}"
}

func value(v types.AttributeValue) string {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return fmt.Sprintf("S%q", x.Value)
	case *types.AttributeValueMemberN:
		return "N" + x.Value
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("B%x", x.Value)
	case *types.AttributeValueMemberBOOL:
		return fmt.Sprintf("BOOL%v", x.Value)
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberL:
		s := "L["
		for _, e := range x.Value {
			s += value(e) + ","
		}
		return s + "]"
	case *types.AttributeValueMemberM:
		return "M" + canonical(x.Value)
	case *types.AttributeValueMemberSS:
		return fmt.Sprintf("SS%q", x.Value)
	case *types.AttributeValueMemberNS:
		return fmt.Sprintf("NS%q", x.Value)
	}
	return fmt.Sprintf("%T", v)
}

var _ http.Handler = (*miniserver.Server)(nil)
