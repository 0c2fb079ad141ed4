package samtemplate_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/httpapi"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

const cursorSecret = "0123456789abcdef0123456789abcdef"

// deployParams are what a deploy would pass for the parameters that have no
// default.
var deployParams = map[string]string{
	"JwtIssuer":    "https://issuer.example.test/",
	"JwtAudience":  "app-artifacts,gpuaas-cli",
	"CursorSecret": cursorSecret,
}

func templatePath(t *testing.T) string {
	t.Helper()
	root, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "template.yaml")
}

func load(t *testing.T, params map[string]string) *samtemplate.Template {
	t.Helper()
	tpl, err := samtemplate.Load(templatePath(t), params)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func with(base map[string]string, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// wantRoutes is the code's route table (shared/httpapi.Routes), sorted by
// path then method: the template must declare exactly these.
var wantRoutes = func() []samtemplate.Route {
	var out []samtemplate.Route
	for _, r := range httpapi.Routes {
		out = append(out, samtemplate.Route{LogicalID: r.LogicalID, Method: r.Method, Path: r.Path})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}()

// Route names (functions/ directories) by logical id, and whether the route
// only reads.
var functions = func() map[string]struct {
	name     string
	readOnly bool
} {
	out := map[string]struct {
		name     string
		readOnly bool
	}{}
	for _, f := range app.Functions() {
		out[f.LogicalID] = struct {
			name     string
			readOnly bool
		}{f.Name, false}
	}
	return out
}()

func TestRoutes(t *testing.T) {
	t.Parallel()
	tpl := load(t, nil)
	if diff := cmp.Diff(wantRoutes, tpl.Routes()); diff != "" {
		t.Errorf("Routes() mismatch (-want +got):\n%s", diff)
	}
}

func TestFunctionIDs(t *testing.T) {
	t.Parallel()
	tpl := load(t, nil)
	var want []string
	for _, f := range app.Functions() {
		if f.Trigger == "http" {
			want = append(want, f.LogicalID)
		}
	}
	sort.Strings(want)
	var all []string
	for id := range functions {
		all = append(all, id)
	}
	sort.Strings(all)
	if diff := cmp.Diff(all, tpl.FunctionIDs()); diff != "" {
		t.Errorf("FunctionIDs() mismatch (-want +got):\n%s", diff)
	}
	// Every HTTP function serves exactly one route.
	var routed []string
	for _, r := range tpl.Routes() {
		routed = append(routed, r.LogicalID)
	}
	if diff := cmp.Diff(want, routed, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("functions behind routes mismatch (-want +got):\n%s", diff)
	}
}

func TestFunction(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"dev", "prod"} {
		tpl := load(t, map[string]string{"Stage": stage})
		for _, id := range tpl.FunctionIDs() {
			t.Run(stage+"/"+id, func(t *testing.T) {
				t.Parallel()
				fn, ok := functions[id]
				if !ok {
					t.Fatalf("function %s is not in the contract notes", id)
				}
				got, err := tpl.Function(id)
				if err != nil {
					t.Fatal(err)
				}
				want := samtemplate.FunctionConfig{
					LogicalID:     id,
					FunctionName:  "gpuaas-app-artifacts-" + stage + "-" + fn.name,
					Runtime:       "provided.al2023",
					Handler:       "bootstrap",
					CodeURI:       ".",
					BuildMethod:   "makefile",
					Architectures: []string{"arm64"},
					MemorySize:    256,
					Timeout:       10,
					Tracing:       "Active",
				}
				switch id {
				case "PublisherFunction", "VerifierFunction":
					want.Timeout = 60 // batches and registry reads
				case "RegistrarFunction":
					want.Timeout = 30
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Function(%s) mismatch (-want +got):\n%s", id, diff)
				}
			})
		}
	}
}

// Resources as PolicyGrants resolves them (see PolicyStatements).
const (
	tableARN = "ArtifactsTable.Arn"
	gsi1ARN  = tableARN + "/index/GSI1"
	gsi2ARN  = tableARN + "/index/GSI2"
	ecrRepos = "arn:aws:ecr:us-east-1:123456789012:repository/"
)

// wantGrants is least privilege, function by function: every action with
// exactly the resources it is allowed on. Each grant is what the function's
// code calls (TestPolicyCoversCalls runs the code and checks both ways):
//
//   - Store reads are one BatchGetItem (GetArtifact, LoadForMutation,
//     LoadProject, GetIntent) or one Query (ListArtifacts on the table,
//     IntentsFor on GSI1, AuditEvents on the table, GSI1 by artifact, GSI2 by
//     correlation id); nothing calls GetItem, Scan or a batch write.
//   - Store.Commit is one TransactWriteItems, authorised item by item as
//     PutItem, UpdateItem, DeleteItem and ConditionCheckItem: each function
//     gets the kinds its mutations contain.
//   - The registry: CreateRepository for publish intents, BatchGetImage of
//     pushed and registered digests, and for signatures the registry API
//     (manifests and referrers: BatchGetImage; blobs:
//     GetDownloadUrlForLayer; its token: GetAuthorizationToken, which has no
//     resource-level permissions).
func wantGrants(pullThroughPrefix string) map[string]map[string][]string {
	table := []string{tableARN}
	read := map[string][]string{"dynamodb:BatchGetItem": table}
	transition := map[string][]string{
		"dynamodb:BatchGetItem": table, "dynamodb:PutItem": table, "dynamodb:UpdateItem": table,
	}
	register := map[string][]string{
		"dynamodb:ConditionCheckItem": table, "dynamodb:PutItem": table, "dynamodb:UpdateItem": table,
	}
	with := func(base map[string][]string, extra map[string][]string) map[string][]string {
		out := map[string][]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	images := []string{ecrRepos + "gpuaas/*", ecrRepos + pullThroughPrefix + "/*"}
	sort.Strings(images)
	return map[string]map[string][]string{
		"ListArtifactsFunction":     {"dynamodb:Query": table},
		"GetArtifactFunction":       read,
		"GetPublishIntentFunction":  read,
		"GetArtifactPolicyFunction": read,
		"ListArtifactAuditEventsFunction": {
			"dynamodb:BatchGetItem": table,
			"dynamodb:Query":        {gsi1ARN},
		},
		"ListAuditEventsFunction": {
			"dynamodb:BatchGetItem": table,
			"dynamodb:Query":        {tableARN, gsi1ARN, gsi2ARN},
		},
		"CreatePublishIntentFunction": {
			"dynamodb:BatchGetItem": table, "dynamodb:PutItem": table, "dynamodb:UpdateItem": table,
			"ecr:CreateRepository": {ecrRepos + "gpuaas/*"},
		},
		"RegisterArtifactFunction": register,
		// Only a promotion can be an accepted no-op, committed as a
		// ConditionCheck on the artifact's revision.
		"PromoteArtifactFunction":   with(transition, map[string][]string{"dynamodb:ConditionCheckItem": table}),
		"DeprecateArtifactFunction": transition,
		"RetireArtifactFunction":    transition,
		"RevokeArtifactFunction":    transition,
		"VerifyArtifactFunction":    transition,
		"PutArtifactPolicyFunction": {
			"dynamodb:BatchGetItem": table, "dynamodb:DeleteItem": table, "dynamodb:PutItem": table, "dynamodb:UpdateItem": table,
		},
		"RegistrarFunction": with(register, map[string][]string{
			"dynamodb:Query":        table,
			"dynamodb:BatchGetItem": table,
			"ecr:BatchGetImage":     {ecrRepos + "gpuaas/*"},
		}),
		// The stream's read permissions and the dead-letter queue's
		// SendMessage come from SAM (the event's AWSLambdaDynamoDBExecutionRole
		// and OnFailure Type SQS): TestDeadLetterQueuePolicies.
		"PublisherFunction": {"events:PutEvents": {"EventBus.Arn"}},
		"VerifierFunction": {
			"dynamodb:BatchGetItem":      table,
			"dynamodb:PutItem":           table,
			"ecr:BatchGetImage":          images,
			"ecr:GetDownloadUrlForLayer": images,
			"ecr:GetAuthorizationToken":  {"*"},
		},
	}
}

func TestPolicyGrants(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "ptc/docker-hub"} {
		params := map[string]string{}
		wantPrefix := "pull-through" // the parameter's default
		if prefix != "" {
			params["PullThroughRepositoryPrefix"] = prefix
			wantPrefix = prefix
		}
		tpl := load(t, params)
		want := wantGrants(wantPrefix)
		var ids []string
		for id := range want {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if diff := cmp.Diff(ids, tpl.FunctionIDs()); diff != "" {
			t.Errorf("functions with expected grants mismatch (-want +got):\n%s", diff)
		}
		for _, id := range tpl.FunctionIDs() {
			t.Run(wantPrefix+"/"+id, func(t *testing.T) {
				t.Parallel()
				stmts, err := tpl.PolicyStatements(id, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range stmts {
					// Unconditional Allows only, so the grants are the whole truth.
					if st.Effect != "Allow" || st.Condition != nil {
						t.Errorf("statement %q: Effect %s, Condition %v: want an unconditional Allow", st.Sid, st.Effect, st.Condition)
					}
					for _, a := range st.Actions {
						if strings.Contains(a, "*") {
							t.Errorf("statement %q: wildcard action %q", st.Sid, a)
						}
					}
				}
				got, err := tpl.PolicyGrants(id, nil)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want[id], got); diff != "" {
					t.Errorf("PolicyGrants(%s) mismatch (-want +got):\n%s", id, diff)
				}
				for action, resources := range got {
					for _, r := range resources {
						// "*" only where AWS allows nothing else.
						if r == "*" && action != "ecr:GetAuthorizationToken" {
							t.Errorf("%s on every resource", action)
						}
						if strings.Contains(r, "/index/*") {
							t.Errorf("%s on every index (%s): name the indexes queried", action, r)
						}
					}
				}
				// PolicyActions agrees.
				var wantActions []string
				for a := range want[id] {
					wantActions = append(wantActions, a)
				}
				sort.Strings(wantActions)
				actions, err := tpl.PolicyActions(id)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(wantActions, actions); diff != "" {
					t.Errorf("PolicyActions(%s) mismatch (-want +got):\n%s", id, diff)
				}
			})
		}
	}
}

// Permissions the template does not spell out are refused rather than
// silently skipped, so a loose grant cannot hide in them.
func TestPolicyStatementsRefuseWhatTheyCannotRead(t *testing.T) {
	t.Parallel()
	fn := func(props string) string {
		return `
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
` + props
	}
	tests := []struct {
		name, props, wantErr string
	}{
		{"managed policy", "      Policies: AmazonDynamoDBFullAccess\n", "not an inline policy document"},
		{"managed policy in a list", "      Policies:\n        - AmazonDynamoDBFullAccess\n", "Policies[0] is not an inline policy document"},
		{"SAM policy template", "      Policies:\n        - DynamoDBCrudPolicy:\n            TableName: !Ref Table\n", "not an inline policy document"},
		{"own role", "      Role: arn:aws:iam::123456789012:role/r\n", "Role"},
		{"NotAction", "      Policies:\n        - Statement:\n            - Effect: Allow\n              NotAction: iam:*\n              Resource: \"*\"\n", "NotAction is not accepted"},
		{"NotResource", "      Policies:\n        - Statement:\n            - Effect: Allow\n              Action: s3:GetObject\n              NotResource: x\n", "NotResource is not accepted"},
		{"no resource", "      Policies:\n        - Statement:\n            - Effect: Allow\n              Action: s3:GetObject\n", "needs Effect, Action and Resource"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "template.yaml")
			if err := os.WriteFile(path, []byte(fn(tc.props)), 0o600); err != nil {
				t.Fatal(err)
			}
			tpl, err := samtemplate.Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tpl.PolicyStatements("Fn", nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("PolicyStatements error = %v, want one mentioning %q", err, tc.wantErr)
			}
			if _, err := tpl.PolicyGrants("Fn", nil); err == nil {
				t.Error("PolicyGrants: want the same error")
			}
		})
	}

	// What is readable resolves: a single statement, scalars, refs and Sub.
	path := filepath.Join(t.TempDir(), "template.yaml")
	props := "      Policies:\n        Statement:\n          Effect: Allow\n          Action: dynamodb:Query\n" +
		"          Resource: !Sub ${Table.Arn}/index/${AWS::Region}\n"
	if err := os.WriteFile(path, []byte(fn(props)), 0o600); err != nil {
		t.Fatal(err)
	}
	tpl, err := samtemplate.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.PolicyGrants("Fn", map[string]string{"Table.Arn": "arn:table"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"dynamodb:Query": {"arn:table/index/us-east-1"}}, got); diff != "" {
		t.Errorf("PolicyGrants mismatch (-want +got):\n%s", diff)
	}
}

// Every EventBridge rule of the template dead-letters to a queue the
// template declares, and each queue's policy lets EventBridge send only from
// the rules that use it (aws:SourceArn). The stream's and the asynchronous
// invocations' failures are sent with the functions' roles, which SAM grants
// SendMessage on their destinations when they say Type SQS.
func TestDeadLetterQueuePolicies(t *testing.T) {
	t.Parallel()
	tpl := load(t, deployParams)
	// queue (as "Id.Arn") -> the ARNs ("Id.Arn") of the rules that use it
	rulesOf := map[string][]string{}
	refs := map[string]string{}
	for _, id := range tpl.FunctionIDs() {
		evs, err := tpl.FunctionEvents(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			switch ev.Type {
			case "EventBridgeRule":
				dlq, _ := ev.Properties["DeadLetterConfig"].(map[string]any)
				arn, _ := dlq["Arn"].(string)
				if len(dlq) != 1 || arn == "" {
					// With Type, SAM makes a queue (and policy) of its own.
					t.Errorf("%s.%s: DeadLetterConfig %v: want only Arn, a queue of the template", id, ev.Name, dlq)
					continue
				}
				// The rule SAM makes from the event.
				rule := id + ev.Name + ".Arn"
				refs[rule] = rule
				rulesOf[arn] = append(rulesOf[arn], rule)
			case "DynamoDB":
				dc, _ := ev.Properties["DestinationConfig"].(map[string]any)
				of, _ := dc["OnFailure"].(map[string]any)
				if of["Type"] != "SQS" || of["Destination"] == nil {
					t.Errorf("%s.%s: OnFailure %v: want Type SQS and a Destination (SAM then grants SendMessage)", id, ev.Name, of)
				}
			}
		}
	}
	if len(rulesOf) == 0 {
		t.Fatal("no EventBridge rule with a dead-letter queue")
	}

	got := map[string][]string{}
	for name := range tpl.CloudFormation().GetAllSQSQueuePolicyResources() {
		props, err := tpl.ResourceProperties(name, refs)
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := props["PolicyDocument"].(map[string]any)
		stmts, _ := doc["Statement"].([]any)
		queues, _ := props["Queues"].([]any)
		for _, s := range stmts {
			st, _ := s.(map[string]any)
			principal, _ := st["Principal"].(map[string]any)
			cond, _ := st["Condition"].(map[string]any)
			arnEquals, _ := cond["ArnEquals"].(map[string]any)
			source, _ := arnEquals["aws:SourceArn"].(string)
			resource, _ := st["Resource"].(string)
			if st["Effect"] != "Allow" || st["Action"] != "sqs:SendMessage" || principal["Service"] != "events.amazonaws.com" || len(principal) != 1 {
				t.Errorf("%s: statement %v: want only sqs:SendMessage for events.amazonaws.com", name, st)
			}
			if len(cond) != 1 || len(arnEquals) != 1 || source == "" {
				t.Errorf("%s: statement %v: want one aws:SourceArn condition", name, st)
			}
			// The statement's resource ("Id.Arn") is one queue the policy is
			// attached to ("Id", from Ref).
			attached := false
			for _, q := range queues {
				attached = attached || q.(string)+".Arn" == resource
			}
			if !attached {
				t.Errorf("%s: Resource %q: want one queue of %v", name, resource, queues)
			}
			got[resource] = append(got[resource], source)
		}
	}
	for _, v := range got {
		sort.Strings(v)
	}
	for _, v := range rulesOf {
		sort.Strings(v)
	}
	if diff := cmp.Diff(rulesOf, got); diff != "" {
		t.Errorf("dead-letter senders by queue mismatch (-want rules that use the queue +got SourceArn allowed):\n%s", diff)
	}
}

func keySchema(hash, rng string) []ddbtypes.KeySchemaElement {
	return []ddbtypes.KeySchemaElement{
		{AttributeName: aws.String(hash), KeyType: ddbtypes.KeyTypeHash},
		{AttributeName: aws.String(rng), KeyType: ddbtypes.KeyTypeRange},
	}
}

func wantTableInput(name string) *dynamodb.CreateTableInput {
	var attrs []ddbtypes.AttributeDefinition
	for _, a := range []string{"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"} {
		attrs = append(attrs, ddbtypes.AttributeDefinition{
			AttributeName: aws.String(a),
			AttributeType: ddbtypes.ScalarAttributeTypeS,
		})
	}
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: attrs,
		KeySchema:            keySchema("PK", "SK"),
		GlobalSecondaryIndexes: []ddbtypes.GlobalSecondaryIndex{
			{
				IndexName:  aws.String("GSI1"),
				KeySchema:  keySchema("GSI1PK", "GSI1SK"),
				Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll},
			},
			{
				IndexName:  aws.String("GSI2"),
				KeySchema:  keySchema("GSI2PK", "GSI2SK"),
				Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll},
			},
		},
		StreamSpecification: &ddbtypes.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: ddbtypes.StreamViewTypeNewImage,
		},
	}
}

var ignoreSDKInternals = cmpopts.IgnoreUnexported(
	dynamodb.CreateTableInput{},
	ddbtypes.AttributeDefinition{},
	ddbtypes.KeySchemaElement{},
	ddbtypes.GlobalSecondaryIndex{},
	ddbtypes.Projection{},
	ddbtypes.StreamSpecification{},
)

func TestCreateTableInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		params    map[string]string
		logicalID string
		tableName string
		want      *dynamodb.CreateTableInput
		wantErr   bool
	}{
		{name: "template name", logicalID: "ArtifactsTable", want: wantTableInput("gpuaas-app-artifacts-dev")},
		{name: "stage parameter", params: map[string]string{"Stage": "prod"}, logicalID: "ArtifactsTable", want: wantTableInput("gpuaas-app-artifacts-prod")},
		{name: "name override", logicalID: "ArtifactsTable", tableName: "local-artifacts", want: wantTableInput("local-artifacts")},
		{name: "unknown table", logicalID: "NoSuchTable", wantErr: true},
		{name: "not a table", logicalID: "ListArtifactsFunction", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := load(t, tc.params)
			got, err := tpl.CreateTableInput(tc.logicalID, tc.tableName)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CreateTableInput(%q, %q) error = %v, wantErr %v", tc.logicalID, tc.tableName, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, ignoreSDKInternals); diff != "" {
				t.Errorf("CreateTableInput mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTableTTLAttribute(t *testing.T) {
	t.Parallel()
	tpl := load(t, nil)
	tests := []struct{ logicalID, want string }{
		{"ArtifactsTable", "ttl"},
		{"NoSuchTable", ""},
	}
	for _, tc := range tests {
		t.Run(tc.logicalID, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, tpl.TableTTLAttribute(tc.logicalID)); diff != "" {
				t.Errorf("TableTTLAttribute(%s) mismatch (-want +got):\n%s", tc.logicalID, diff)
			}
		})
	}
}

func TestFunctionEnv(t *testing.T) {
	t.Parallel()
	tableRef := map[string]string{"ArtifactsTable": "local-artifacts"}
	tests := []struct {
		name      string
		params    map[string]string
		logicalID string
		refs      map[string]string
		want      map[string]string
		wantErr   string
	}{
		{
			name:      "registry host defaults to the account's ECR",
			params:    map[string]string{"CursorSecret": cursorSecret},
			logicalID: "ListArtifactsFunction",
			refs:      tableRef,
			want: map[string]string{
				"TABLE_NAME":                     "local-artifacts",
				"REGISTRY_HOST":                  "123456789012.dkr.ecr.us-east-1.amazonaws.com",
				"CURSOR_SECRET":                  cursorSecret,
				"STAGE":                          "dev",
				"PULL_THROUGH_REPOSITORY_PREFIX": "pull-through",
			},
		},
		{
			name:      "account and region from refs",
			params:    map[string]string{"CursorSecret": cursorSecret, "Stage": "prod"},
			logicalID: "RegisterArtifactFunction",
			refs:      with(tableRef, map[string]string{"AWS::AccountId": "000000000000", "AWS::Region": "eu-west-1"}),
			want: map[string]string{
				"TABLE_NAME":                     "local-artifacts",
				"REGISTRY_HOST":                  "000000000000.dkr.ecr.eu-west-1.amazonaws.com",
				"STAGE":                          "prod",
				"PULL_THROUGH_REPOSITORY_PREFIX": "pull-through",
			},
		},
		{
			name:      "registry host parameter",
			params:    map[string]string{"CursorSecret": cursorSecret, "RegistryHost": "registry.example.test"},
			logicalID: "GetArtifactFunction",
			refs:      tableRef,
			want: map[string]string{
				"TABLE_NAME":                     "local-artifacts",
				"REGISTRY_HOST":                  "registry.example.test",
				"STAGE":                          "dev",
				"PULL_THROUGH_REPOSITORY_PREFIX": "pull-through",
			},
		},
		{
			name:      "refs win over parameters",
			params:    map[string]string{"CursorSecret": cursorSecret, "Stage": "prod"},
			logicalID: "PromoteArtifactFunction",
			refs:      with(tableRef, map[string]string{"RegistryHost": "127.0.0.1:5000", "Stage": "local", "CursorSecret": "from-refs"}),
			want: map[string]string{
				"TABLE_NAME":                     "local-artifacts",
				"REGISTRY_HOST":                  "127.0.0.1:5000",
				"STAGE":                          "local",
				"PULL_THROUGH_REPOSITORY_PREFIX": "pull-through",
			},
		},
		{
			name:      "table ref missing",
			params:    map[string]string{"CursorSecret": cursorSecret},
			logicalID: "ListArtifactsFunction",
			wantErr:   "ArtifactsTable",
		},
		{
			name:      "parameter without default or value",
			logicalID: "ListArtifactsFunction",
			refs:      tableRef,
			wantErr:   "CursorSecret",
		},
		{
			name:      "unknown function",
			params:    map[string]string{"CursorSecret": cursorSecret},
			logicalID: "NoSuchFunction",
			refs:      tableRef,
			wantErr:   "NoSuchFunction",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := load(t, tc.params)
			got, err := tpl.FunctionEnv(tc.logicalID, tc.refs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FunctionEnv error = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FunctionEnv(%s) mismatch (-want +got):\n%s", tc.logicalID, diff)
			}
		})
	}
}

func TestEveryRouteHasTheJWTAuthorizer(t *testing.T) {
	t.Parallel()
	tpl := load(t, deployParams)
	api, err := tpl.CloudFormation().GetServerlessHttpApiWithName("HttpApi")
	if err != nil {
		t.Fatal(err)
	}
	if api.Auth == nil || aws.ToString(api.Auth.DefaultAuthorizer) != "JwtAuthorizer" {
		t.Fatalf("HttpApi Auth.DefaultAuthorizer = %v, want JwtAuthorizer", api.Auth)
	}
	want := &samtemplate.Authorizer{
		Name:           "JwtAuthorizer",
		Type:           "JWT",
		IdentitySource: "$request.header.Authorization",
		Issuer:         "https://issuer.example.test/",
		Audience:       []string{"app-artifacts", "gpuaas-cli"},
	}
	for _, r := range tpl.Routes() {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			t.Parallel()
			got, err := tpl.RouteAuthorizer(r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("RouteAuthorizer mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A small template of its own shows the rules that the project's template
// does not exercise: an open route, an event's own authorizer, function
// environment overriding Globals, AWS::NoValue and nested conditions.
const miniTemplate = `
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Mode:
    Type: String
    Default: a
Conditions:
  IsA: !Equals [!Ref Mode, a]
  # goformation's YAML reader has no short form !Condition: use the long one.
  IsNotA: !Not [{Condition: IsA}]
  AOrB: !Or [{Condition: IsA}, !Equals [!Ref Mode, b]]
Globals:
  Function:
    Runtime: provided.al2023
    Handler: bootstrap
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: https://issuer.example.test/
              audience: [aud]
          Other:
            IdentitySource: $request.header.X-Token
            JwtConfiguration:
              issuer: https://other.example.test/
              audience: [other]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Environment:
        Variables:
          OVERRIDDEN: from-function
          ONLY_IF_A: !If [IsA, "yes", !Ref AWS::NoValue]
          NOT_A: !If [IsNotA, "true", "false"]
          A_OR_B: !If [AOrB, "true", "false"]
          JOINED: !Join ["-", [!Ref Mode, !Select [1, !Split [",", "x,y,z"]]]]
          ESCAPED: !Sub ["${!Literal}-${Mode}-${Named}", {Named: !Ref Mode}]
          ATTR: !GetAtt Api.ApiEndpoint
      Events:
        Open:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: get
            Path: /open
            Auth:
              Authorizer: NONE
        Other:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: post
            Path: /other
            Auth:
              Authorizer: Other
        Default:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: delete
            Path: /default
`

func TestMiniTemplate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(path, []byte(miniTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{"Api.ApiEndpoint": "http://127.0.0.1:3000"}

	envTests := []struct {
		mode string
		want map[string]string
	}{
		{"a", map[string]string{
			"SHARED": "from-globals", "OVERRIDDEN": "from-function", "ONLY_IF_A": "yes",
			"NOT_A": "false", "A_OR_B": "true", "JOINED": "a-y", "ESCAPED": "${Literal}-a-a",
			"ATTR": "http://127.0.0.1:3000",
		}},
		{"b", map[string]string{
			"SHARED": "from-globals", "OVERRIDDEN": "from-function",
			"NOT_A": "true", "A_OR_B": "true", "JOINED": "b-y", "ESCAPED": "${Literal}-b-b",
			"ATTR": "http://127.0.0.1:3000",
		}},
		{"c", map[string]string{
			"SHARED": "from-globals", "OVERRIDDEN": "from-function",
			"NOT_A": "true", "A_OR_B": "false", "JOINED": "c-y", "ESCAPED": "${Literal}-c-c",
			"ATTR": "http://127.0.0.1:3000",
		}},
	}
	for _, tc := range envTests {
		t.Run("env/mode="+tc.mode, func(t *testing.T) {
			t.Parallel()
			tpl, err := samtemplate.Load(path, map[string]string{"Mode": tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.FunctionEnv("Fn", refs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FunctionEnv mismatch (-want +got):\n%s", diff)
			}
		})
	}

	tpl, err := samtemplate.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	authTests := []struct {
		route samtemplate.Route
		want  *samtemplate.Authorizer
	}{
		{
			samtemplate.Route{LogicalID: "Fn", Method: "DELETE", Path: "/default"},
			&samtemplate.Authorizer{Name: "Jwt", Type: "JWT", IdentitySource: "$request.header.Authorization", Issuer: "https://issuer.example.test/", Audience: []string{"aud"}},
		},
		{samtemplate.Route{LogicalID: "Fn", Method: "GET", Path: "/open"}, nil},
		{
			samtemplate.Route{LogicalID: "Fn", Method: "POST", Path: "/other"},
			&samtemplate.Authorizer{Name: "Other", Type: "JWT", IdentitySource: "$request.header.X-Token", Issuer: "https://other.example.test/", Audience: []string{"other"}},
		},
	}
	var routes []samtemplate.Route
	for _, tc := range authTests {
		routes = append(routes, tc.route)
		t.Run("auth"+tc.route.Path, func(t *testing.T) {
			t.Parallel()
			got, err := tpl.RouteAuthorizer(tc.route)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("RouteAuthorizer mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(routes, tpl.Routes()); diff != "" {
		t.Errorf("Routes() mismatch (-want +got):\n%s", diff)
	}
	if _, err := tpl.RouteAuthorizer(samtemplate.Route{LogicalID: "Fn", Method: "PUT", Path: "/nowhere"}); err == nil {
		t.Error("RouteAuthorizer of an unknown route: want an error")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("Resources: [unclosed"), 0o600); err != nil {
		t.Fatal(err)
	}
	dup := filepath.Join(dir, "dup.yaml")
	dupTemplate := strings.Replace(miniTemplate, "Path: /default", "Path: /open\n            Auth:\n              Authorizer: NONE", 1)
	dupTemplate = strings.Replace(dupTemplate, "Method: delete", "Method: GET", 1)
	if err := os.WriteFile(dup, []byte(dupTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		params  map[string]string
		wantErr string
		is      error
	}{
		{name: "missing file", path: filepath.Join(dir, "missing.yaml"), is: fs.ErrNotExist},
		{name: "invalid yaml", path: bad, wantErr: "goformation"},
		{name: "undeclared parameter", path: templatePath(t), params: map[string]string{"NoSuchParam": "x"}, wantErr: "NoSuchParam"},
		{name: "duplicate route", path: dup, wantErr: "GET /open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := samtemplate.Load(tc.path, tc.params)
			if err == nil {
				t.Fatal("Load: want an error")
			}
			if !strings.HasPrefix(err.Error(), "samtemplate.Load: ") {
				t.Errorf("error %q does not start with samtemplate.Load: ", err)
			}
			if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

// goformation registers its YAML tag handlers in a package-level map on
// every parse; Load must serialise that so parallel loads do not race.
func TestLoadConcurrently(t *testing.T) {
	t.Parallel()
	path := templatePath(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := samtemplate.Load(path, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestFindRepoRoot(t *testing.T) {
	// No t.Parallel: the subtest changes the working directory.
	root, err := samtemplate.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "template.yaml"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("repo root %s: %v", root, err)
		}
	}
	t.Run("no go.mod above", func(t *testing.T) {
		t.Chdir(t.TempDir())
		if _, err := samtemplate.FindRepoRoot(); err == nil {
			t.Error("FindRepoRoot outside a module: want an error")
		}
	})
}

func TestFunctionEvents(t *testing.T) {
	t.Parallel()
	tpl := load(t, with(deployParams, map[string]string{"Stage": "local"}))
	evs, err := tpl.FunctionEvents("VerifierFunction", map[string]string{"EventBus": "bus-local"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Type != "EventBridgeRule" || evs[0].Properties["EventBusName"] != "bus-local" {
		t.Fatalf("verifier events: %+v", evs)
	}
	pat, _ := evs[0].Properties["Pattern"].(map[string]any)
	if diff := cmp.Diff([]any{"App Artifact Registered", "App Artifact Verification Requested"}, pat["detail-type"]); diff != "" {
		t.Fatal(diff)
	}
	evs, err = tpl.FunctionEvents("PublisherFunction", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Type != "DynamoDB" || evs[0].Properties["Stream"] != "ArtifactsTable.StreamArn" {
		t.Fatalf("publisher events: %+v", evs)
	}
	bus, err := tpl.ResourceProperties("EventBus", nil)
	if err != nil || bus["Name"] != "gpuaas-app-artifacts-local" {
		t.Fatalf("event bus: %v %v", bus, err)
	}
}

// TestCursorSecretOnlyWherePagesAre: the cursor secret is given to the
// functions of the routes that page, and to no other.
func TestCursorSecretOnlyWherePagesAre(t *testing.T) {
	tmpl := load(t, map[string]string{"CursorSecret": strings.Repeat("c", 32)})
	for _, rt := range httpapi.Routes {
		env, err := tmpl.FunctionEnv(rt.LogicalID, map[string]string{"ArtifactsTable": "t"})
		if err != nil {
			t.Fatal(err)
		}
		if _, has := env["CURSOR_SECRET"]; has != rt.Pages {
			t.Errorf("%s: CURSOR_SECRET present=%v, but the route pages=%v", rt.LogicalID, has, rt.Pages)
		}
	}
}
