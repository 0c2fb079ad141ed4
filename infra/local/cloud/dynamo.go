package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	miniserver "github.com/truora/minidyn/server"

	"github.com/gpuaas/app-artifacts/infra/local/ddbfix"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// TableLogicalID is the table resource in template.yaml.
const TableLogicalID = "ArtifactsTable"

// Dynamo is a DynamoDB-compatible endpoint on loopback holding the
// template's table, with its items saved to and restored from a file.
type Dynamo struct {
	Mini      *miniserver.Server
	URL       string
	TableName string
	stateFile string
	srv       *http.Server
	done      chan error
}

// ListenError says a port is taken (or otherwise cannot be bound).
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("cannot listen on %s (is another process using it? pick another port with a flag): %v", e.Addr, e.Err)
}

// Listen binds addr on loopback, with a clear error when it is taken.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return l, nil
}

// StartDynamo serves minidyn on addr, creates tableName from the template's
// table resource and restores stateFile ("" for none) into it.
func StartDynamo(addr string, tmpl *samtemplate.Template, tableName, stateFile string) (*Dynamo, error) {
	l, err := Listen(addr)
	if err != nil {
		return nil, err
	}
	return ServeDynamo(l, tmpl, tableName, stateFile, nil)
}

// ServeDynamo is StartDynamo on a bound listener; wrap, when set, puts a
// handler (the stream) in front of the engine. Restoring state bypasses it,
// so a restart does not replay old writes into the stream.
func ServeDynamo(l net.Listener, tmpl *samtemplate.Template, tableName, stateFile string, wrap func(http.Handler) http.Handler) (*Dynamo, error) {
	in, err := tmpl.CreateTableInput(TableLogicalID, tableName)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("cloud.StartDynamo: %w", err)
	}
	d := &Dynamo{Mini: miniserver.NewServer(), TableName: tableName, stateFile: stateFile, done: make(chan error, 1)}
	d.URL = "http://" + l.Addr().String()
	// DynamoDB's Query semantics where minidyn's differ.
	h := ddbfix.Wrap(d.Mini, ddbfix.KeysOf(in))
	if wrap != nil {
		h = wrap(h)
	}
	d.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { d.done <- d.srv.Serve(l) }()

	if _, err := d.Client().CreateTable(context.Background(), in); err != nil {
		d.Close()
		return nil, fmt.Errorf("cloud.StartDynamo: create table: %w", err)
	}
	if err := d.restore(); err != nil {
		d.Close()
		return nil, fmt.Errorf("cloud.StartDynamo: restore %s: %w", stateFile, err)
	}
	return d, nil
}

// Client is an SDK client for the endpoint.
func (d *Dynamo) Client(opts ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:  awshttp.NewBuildableClient(),
	}
	all := append([]func(*dynamodb.Options){func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(d.URL) }}, opts...)
	return dynamodb.NewFromConfig(cfg, all...)
}

// call runs one DynamoDB JSON request on the engine in-process (not through
// the stream) and decodes the answer. Save and restore use the wire format
// as is, so no item is converted.
func (d *Dynamo) call(op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	rec := httptest.NewRecorder()
	d.Mini.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", op, rec.Code, rec.Body.Bytes())
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

type state struct {
	Table string            `json:"table"`
	Items []json.RawMessage `json:"items"`
}

// Save writes every item of the table to the state file (atomically).
func (d *Dynamo) Save() error {
	if d.stateFile == "" {
		return nil
	}
	st := state{Table: d.TableName, Items: []json.RawMessage{}}
	var start json.RawMessage
	for {
		in := map[string]any{"TableName": d.TableName}
		if start != nil {
			in["ExclusiveStartKey"] = start
		}
		var out struct {
			Items            []json.RawMessage `json:"Items"`
			LastEvaluatedKey json.RawMessage   `json:"LastEvaluatedKey"`
		}
		if err := d.call("Scan", in, &out); err != nil {
			return fmt.Errorf("cloud.Save: %w", err)
		}
		st.Items = append(st.Items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 || string(out.LastEvaluatedKey) == "null" || string(out.LastEvaluatedKey) == "{}" {
			break
		}
		start = out.LastEvaluatedKey
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(d.stateFile), 0o700); err != nil {
		return err
	}
	tmp := d.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.stateFile)
}

func (d *Dynamo) restore() error {
	if d.stateFile == "" {
		return nil
	}
	b, err := os.ReadFile(d.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	for i := 0; i < len(st.Items); i += 25 {
		batch := st.Items[i:min(i+25, len(st.Items))]
		reqs := make([]map[string]any, len(batch))
		for j, it := range batch {
			reqs[j] = map[string]any{"PutRequest": map[string]any{"Item": it}}
		}
		var out struct {
			UnprocessedItems map[string][]json.RawMessage `json:"UnprocessedItems"`
		}
		if err := d.call("BatchWriteItem", map[string]any{"RequestItems": map[string]any{d.TableName: reqs}}, &out); err != nil {
			return err
		}
		if n := len(out.UnprocessedItems[d.TableName]); n > 0 {
			return fmt.Errorf("%d items unprocessed", n)
		}
	}
	return nil
}

// Close stops the endpoint without saving.
func (d *Dynamo) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if d.srv.Shutdown(ctx) != nil {
		return d.srv.Close()
	}
	return nil
}
