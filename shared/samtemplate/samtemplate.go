package samtemplate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	cfddb "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
	"github.com/awslabs/goformation/v7/intrinsics"
)

const (
	typeFunction = "AWS::Serverless::Function"
	typeHTTPAPI  = "AWS::Serverless::HttpApi"
)

// PseudoParameters are the values Ref and Fn::Sub give AWS pseudo parameters
// when the caller's refs do not name them. AWS::AccountId and AWS::Region
// match what goformation itself uses.
var PseudoParameters = map[string]string{
	"AWS::AccountId": "123456789012",
	"AWS::Region":    "us-east-1",
	"AWS::Partition": "aws",
	"AWS::URLSuffix": "amazonaws.com",
}

// goformationMu serialises calls into goformation: its YAML reader registers
// its tag handlers in a package-level map on every call, which races when two
// templates are parsed at once.
var goformationMu sync.Mutex

// Template is a loaded SAM template.
type Template struct {
	path   string
	params map[string]string
	cf     *cloudformation.Template
	raw    map[string]any
	routes []routeEvent
}

// Route is one HTTP API route: the function behind it, the upper-case method
// and the path exactly as the template declares it.
type Route struct {
	LogicalID, Method, Path string
}

// FunctionConfig is a function's effective configuration: Globals.Function
// merged with the function's own properties, intrinsics resolved from the
// template's parameters.
type FunctionConfig struct {
	LogicalID     string
	FunctionName  string
	Runtime       string
	Handler       string
	CodeURI       string
	BuildMethod   string // Metadata.BuildMethod
	Architectures []string
	MemorySize    int
	Timeout       int
	Tracing       string
}

// Authorizer is the HTTP API authorizer that guards a route.
type Authorizer struct {
	Name           string
	Type           string // "JWT" or "LAMBDA"
	IdentitySource string
	Issuer         string   // JWT only
	Audience       []string // JWT only
}

type routeEvent struct {
	Route
	event map[string]any // the event's Properties
}

// Load reads and parses the SAM template at path. params override parameter
// defaults (as sam deploy --parameter-overrides would); naming a parameter the
// template does not declare is an error.
func Load(path string, params map[string]string) (*Template, error) {
	t, err := load(path, params)
	if err != nil {
		return nil, fmt.Errorf("samtemplate.Load: %w", err)
	}
	return t, nil
}

func load(path string, params map[string]string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	overrides := make(map[string]any, len(params))
	copied := make(map[string]string, len(params))
	for k, v := range params {
		overrides[k] = v
		copied[k] = v
	}

	goformationMu.Lock()
	cf, cfErr := goformation.ParseYAMLWithOptions(data, &intrinsics.ProcessorOptions{
		ParameterOverrides: overrides,
		EvaluateConditions: true,
	})
	var rawJSON []byte
	if cfErr == nil {
		rawJSON, cfErr = intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	}
	goformationMu.Unlock()
	if cfErr != nil {
		return nil, fmt.Errorf("%s: goformation: %w", path, cfErr)
	}

	var raw map[string]any
	if err := json.Unmarshal(rawJSON, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &Template{path: path, params: copied, cf: cf, raw: raw}

	declared := t.section("Parameters")
	for name := range params {
		if _, ok := declared[name]; !ok {
			return nil, fmt.Errorf("%s: parameter %q is not declared in the template", path, name)
		}
	}
	if t.routes, err = t.collectRoutes(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// LoadRepo loads the template.yaml of the repository the working directory
// is in (see FindRepoRoot).
func LoadRepo(params map[string]string) (*Template, error) {
	root, err := FindRepoRoot()
	if err != nil {
		return nil, err
	}
	return Load(filepath.Join(root, "template.yaml"), params)
}

// FindRepoRoot walks up from the working directory to the first directory
// that holds a go.mod file.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("samtemplate.FindRepoRoot: %w", err)
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("samtemplate.FindRepoRoot: no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// CloudFormation returns goformation's view of the template, with intrinsics
// resolved from the parameters given to Load (a Ref to a resource is empty
// there, and Globals are not merged into functions).
func (t *Template) CloudFormation() *cloudformation.Template { return t.cf }

// Routes returns every HttpApi event of every function, sorted by Path then
// Method.
func (t *Template) Routes() []Route {
	out := make([]Route, len(t.routes))
	for i, r := range t.routes {
		out[i] = r.Route
	}
	return out
}

// FunctionIDs returns the sorted logical ids of all AWS::Serverless::Function
// resources.
func (t *Template) FunctionIDs() []string {
	return t.resourceIDs(typeFunction)
}

// Function returns the effective configuration of a function.
func (t *Template) Function(logicalID string) (FunctionConfig, error) {
	fc, err := t.function(logicalID)
	if err != nil {
		return FunctionConfig{}, fmt.Errorf("samtemplate: function %s: %w", logicalID, err)
	}
	return fc, nil
}

func (t *Template) function(logicalID string) (FunctionConfig, error) {
	props, err := t.functionProperties(logicalID)
	if err != nil {
		return FunctionConfig{}, err
	}
	ev := &evaluator{t: t}
	fc := FunctionConfig{LogicalID: logicalID}
	strs := []struct {
		key string
		dst *string
	}{
		{"FunctionName", &fc.FunctionName},
		{"Runtime", &fc.Runtime},
		{"Handler", &fc.Handler},
		{"CodeUri", &fc.CodeURI},
		{"Tracing", &fc.Tracing},
	}
	for _, s := range strs {
		if *s.dst, err = ev.optionalString(props[s.key]); err != nil {
			return FunctionConfig{}, fmt.Errorf("%s: %w", s.key, err)
		}
	}
	ints := []struct {
		key string
		dst *int
	}{
		{"MemorySize", &fc.MemorySize},
		{"Timeout", &fc.Timeout},
	}
	for _, n := range ints {
		s, err := ev.optionalString(props[n.key])
		if err != nil {
			return FunctionConfig{}, fmt.Errorf("%s: %w", n.key, err)
		}
		if s == "" {
			continue
		}
		if *n.dst, err = strconv.Atoi(s); err != nil {
			return FunctionConfig{}, fmt.Errorf("%s: %w", n.key, err)
		}
	}
	if v, ok := props["Architectures"]; ok {
		if fc.Architectures, err = ev.stringList(v); err != nil {
			return FunctionConfig{}, fmt.Errorf("Architectures: %w", err)
		}
	}
	meta, _ := t.resource(logicalID)["Metadata"].(map[string]any)
	if fc.BuildMethod, err = ev.optionalString(meta["BuildMethod"]); err != nil {
		return FunctionConfig{}, fmt.Errorf("Metadata.BuildMethod: %w", err)
	}
	return fc, nil
}

// FunctionEnv returns a function's environment: Globals.Function's
// Environment.Variables merged with the function's own (the function wins).
// A Ref to a resource or parameter takes its value from refs (keyed by
// logical id or parameter name), then from the parameters given to Load, then
// from the parameter's default, and for pseudo parameters from
// PseudoParameters; Fn::GetAtt takes refs["Resource.Attribute"]. Fn::Sub,
// Fn::If (on the template's Fn::Equals/And/Or/Not conditions), Fn::Join,
// Fn::Split and Fn::Select are evaluated the same way. A value that cannot be
// resolved is an error.
func (t *Template) FunctionEnv(logicalID string, refs map[string]string) (map[string]string, error) {
	env, err := t.functionEnv(logicalID, refs)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: FunctionEnv %s: %w", logicalID, err)
	}
	return env, nil
}

func (t *Template) functionEnv(logicalID string, refs map[string]string) (map[string]string, error) {
	props, err := t.functionProperties(logicalID)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	envProp, _ := props["Environment"].(map[string]any)
	vars, ok := envProp["Variables"]
	if !ok {
		return env, nil
	}
	varMap, ok := vars.(map[string]any)
	if !ok {
		return nil, errors.New("Environment.Variables is not a map")
	}
	ev := &evaluator{t: t, refs: refs}
	for name, v := range varMap {
		val, err := ev.eval(v)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		if _, omit := val.(noValue); omit {
			continue
		}
		s, err := scalarString(val)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		env[name] = s
	}
	return env, nil
}

// FunctionEvent is one entry of a function's Events.
type FunctionEvent struct {
	Name       string
	Type       string // HttpApi, DynamoDB, EventBridgeRule, ...
	Properties map[string]any
}

// FunctionEvents returns a function's event sources, sorted by name, with
// intrinsic functions resolved: parameters from Load, resources from refs,
// and resources refs does not name as their logical id ("Id.Attr" for GetAtt).
func (t *Template) FunctionEvents(logicalID string, refs map[string]string) ([]FunctionEvent, error) {
	props, err := t.functionProperties(logicalID)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: FunctionEvents: %w", err)
	}
	evs, _ := props["Events"].(map[string]any)
	ev := &evaluator{t: t, refs: refs, lenient: true}
	var out []FunctionEvent
	for name, raw := range evs {
		m, _ := raw.(map[string]any)
		typ, _ := m["Type"].(string)
		p, err := ev.eval(m["Properties"])
		if err != nil {
			return nil, fmt.Errorf("samtemplate: FunctionEvents %s.%s: %w", logicalID, name, err)
		}
		pm, _ := p.(map[string]any)
		out = append(out, FunctionEvent{Name: name, Type: typ, Properties: pm})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ResourceProperties returns a resource's properties with intrinsic
// functions resolved like FunctionEvents does.
func (t *Template) ResourceProperties(logicalID string, refs map[string]string) (map[string]any, error) {
	res := t.resource(logicalID)
	if res == nil {
		return nil, fmt.Errorf("samtemplate: no resource %q", logicalID)
	}
	ev := &evaluator{t: t, refs: refs, lenient: true}
	p, err := ev.eval(res["Properties"])
	if err != nil {
		return nil, fmt.Errorf("samtemplate: ResourceProperties %s: %w", logicalID, err)
	}
	pm, _ := p.(map[string]any)
	return pm, nil
}

// RouteAuthorizer returns the authorizer that guards a route: the event's own
// Auth.Authorizer, else its API's Auth.DefaultAuthorizer. It returns nil when
// the route is open (no authorizer, or "NONE"). Issuer and audience are
// resolved from the parameters given to Load.
func (t *Template) RouteAuthorizer(r Route) (*Authorizer, error) {
	a, err := t.routeAuthorizer(r)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: RouteAuthorizer %s %s: %w", r.Method, r.Path, err)
	}
	return a, nil
}

func (t *Template) routeAuthorizer(r Route) (*Authorizer, error) {
	var ev map[string]any
	for _, re := range t.routes {
		if re.Route == r {
			ev = re.event
			break
		}
	}
	if ev == nil {
		return nil, errors.New("no such route")
	}
	var api map[string]any // the HttpApi's Properties
	switch id := ev["ApiId"].(type) {
	case nil:
		// The implicit API SAM creates takes its settings from Globals.HttpApi.
		api, _ = t.section("Globals")["HttpApi"].(map[string]any)
	case map[string]any:
		ref, ok := id["Ref"].(string)
		if !ok || len(id) != 1 {
			return nil, errors.New("ApiId is not a Ref to an HttpApi")
		}
		res := t.resource(ref)
		if res["Type"] != typeHTTPAPI {
			return nil, fmt.Errorf("ApiId refers to %q, which is not an %s", ref, typeHTTPAPI)
		}
		api, _ = res["Properties"].(map[string]any)
	default:
		return nil, errors.New("ApiId is not a Ref to an HttpApi")
	}
	apiAuth, _ := api["Auth"].(map[string]any)
	name, _ := apiAuth["DefaultAuthorizer"].(string)
	if evAuth, ok := ev["Auth"].(map[string]any); ok {
		if n, ok := evAuth["Authorizer"].(string); ok {
			name = n
		}
	}
	if name == "" || name == "NONE" {
		return nil, nil
	}
	defs, _ := apiAuth["Authorizers"].(map[string]any)
	def, ok := defs[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("authorizer %q is not defined on the API", name)
	}
	e := &evaluator{t: t}
	a := &Authorizer{Name: name}
	var err error
	if a.IdentitySource, err = e.optionalString(def["IdentitySource"]); err != nil {
		return nil, fmt.Errorf("IdentitySource: %w", err)
	}
	if jwt, ok := def["JwtConfiguration"].(map[string]any); ok {
		a.Type = "JWT"
		if a.Issuer, err = e.optionalString(jwt["issuer"]); err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		if aud, ok := jwt["audience"]; ok {
			if a.Audience, err = e.stringList(aud); err != nil {
				return nil, fmt.Errorf("audience: %w", err)
			}
		}
	} else if _, ok := def["FunctionArn"]; ok {
		a.Type = "LAMBDA"
	}
	return a, nil
}

// PolicyActions returns the sorted, distinct IAM actions that a function's
// inline policy statements allow. SAM policy templates and managed policy
// names are not expanded (PolicyStatements refuses them), nor are resources
// read: PolicyGrants has both.
func (t *Template) PolicyActions(logicalID string) ([]string, error) {
	props, err := t.functionProperties(logicalID)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: PolicyActions %s: %w", logicalID, err)
	}
	seen := map[string]bool{}
	docs, _ := props["Policies"].([]any)
	if doc, ok := props["Policies"].(map[string]any); ok {
		docs = []any{doc}
	}
	for _, d := range docs {
		doc, _ := d.(map[string]any)
		stmts, _ := doc["Statement"].([]any)
		if s, ok := doc["Statement"].(map[string]any); ok {
			stmts = []any{s}
		}
		for _, s := range stmts {
			stmt, _ := s.(map[string]any)
			if stmt["Effect"] != "Allow" {
				continue
			}
			switch a := stmt["Action"].(type) {
			case string:
				seen[a] = true
			case []any:
				for _, x := range a {
					if s, ok := x.(string); ok {
						seen[s] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

// PolicyStatement is one statement of a function's inline policy
// documents, its intrinsic functions resolved.
type PolicyStatement struct {
	Sid       string
	Effect    string   // "Allow" or "Deny"
	Actions   []string // sorted, distinct
	Resources []string // sorted, distinct
	// Condition is the statement's condition block, nil when it has none.
	Condition map[string]any
}

// PolicyStatements returns the statements of a function's inline policy
// documents (its Policies), in template order. Intrinsic functions are
// resolved as FunctionEvents resolves them: parameters from Load, pseudo
// parameters from PseudoParameters, and a resource that refs does not name to
// its logical id (Ref) or "Id.Attr" (Fn::GetAtt, and ${Id.Attr} in Fn::Sub),
// so `!Sub ${ArtifactsTable.Arn}/index/GSI1` reads
// "ArtifactsTable.Arn/index/GSI1".
//
// Only permissions the template spells out are accepted: a function with a
// Role of its own, a Policies entry that is not an inline policy document (a
// managed policy name or ARN, a SAM policy template), and a statement with
// NotAction, NotResource, Principal or NotPrincipal are errors.
func (t *Template) PolicyStatements(logicalID string, refs map[string]string) ([]PolicyStatement, error) {
	out, err := t.policyStatements(logicalID, refs)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: PolicyStatements %s: %w", logicalID, err)
	}
	return out, nil
}

func (t *Template) policyStatements(logicalID string, refs map[string]string) ([]PolicyStatement, error) {
	props, err := t.functionProperties(logicalID)
	if err != nil {
		return nil, err
	}
	if _, ok := props["Role"]; ok {
		return nil, errors.New("the function has a Role: its permissions are not in its Policies")
	}
	var entries []any
	switch p := props["Policies"].(type) {
	case nil:
	case []any:
		entries = p
	default:
		entries = []any{p}
	}
	ev := &evaluator{t: t, refs: refs, lenient: true}
	var out []PolicyStatement
	for i, e := range entries {
		doc, ok := e.(map[string]any)
		if _, isDoc := doc["Statement"]; !ok || !isDoc {
			return nil, fmt.Errorf("Policies[%d] is not an inline policy document (a managed policy or a SAM policy template?)", i)
		}
		for k := range doc {
			if k != "Version" && k != "Statement" {
				return nil, fmt.Errorf("Policies[%d]: unexpected key %q", i, k)
			}
		}
		v, err := ev.eval(doc["Statement"])
		if err != nil {
			return nil, fmt.Errorf("Policies[%d].Statement: %w", i, err)
		}
		stmts, ok := v.([]any)
		if !ok {
			stmts = []any{v}
		}
		for j, s := range stmts {
			st, err := policyStatement(s)
			if err != nil {
				return nil, fmt.Errorf("Policies[%d].Statement[%d]: %w", i, j, err)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

func policyStatement(v any) (PolicyStatement, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return PolicyStatement{}, errors.New("not a statement")
	}
	var st PolicyStatement
	for k, x := range m {
		var err error
		switch k {
		case "Sid":
			st.Sid, err = scalarString(x)
		case "Effect":
			st.Effect, err = scalarString(x)
			if err == nil && st.Effect != "Allow" && st.Effect != "Deny" {
				err = fmt.Errorf("Effect %q is neither Allow nor Deny", st.Effect)
			}
		case "Action":
			st.Actions, err = stringSet(x)
		case "Resource":
			st.Resources, err = stringSet(x)
		case "Condition":
			if st.Condition, ok = x.(map[string]any); !ok {
				err = errors.New("Condition is not a map")
			}
		default:
			err = fmt.Errorf("%s is not accepted: write what the statement grants as Action and Resource", k)
		}
		if err != nil {
			return PolicyStatement{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	if st.Effect == "" || len(st.Actions) == 0 || len(st.Resources) == 0 {
		return PolicyStatement{}, errors.New("a statement needs Effect, Action and Resource")
	}
	return st, nil
}

// stringSet reads a string or a list of strings as a sorted, distinct list.
func stringSet(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	seen := map[string]bool{}
	for _, x := range list {
		s, err := scalarString(x)
		if err != nil {
			return nil, err
		}
		seen[s] = true
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// PolicyGrants returns what a function's Allow statements grant: every
// action with the sorted, distinct resources it is allowed on, resolved as
// PolicyStatements resolves them. Deny statements and conditions are not
// applied; callers that need the grants to be the whole truth check
// PolicyStatements for them.
func (t *Template) PolicyGrants(logicalID string, refs map[string]string) (map[string][]string, error) {
	stmts, err := t.policyStatements(logicalID, refs)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: PolicyGrants %s: %w", logicalID, err)
	}
	sets := map[string]map[string]bool{}
	for _, st := range stmts {
		if st.Effect != "Allow" {
			continue
		}
		for _, a := range st.Actions {
			if sets[a] == nil {
				sets[a] = map[string]bool{}
			}
			for _, r := range st.Resources {
				sets[a][r] = true
			}
		}
	}
	out := make(map[string][]string, len(sets))
	for a, rs := range sets {
		for r := range rs {
			out[a] = append(out[a], r)
		}
		sort.Strings(out[a])
	}
	return out, nil
}

// CreateTableInput builds a DynamoDB CreateTable request from the
// AWS::DynamoDB::Table resource logicalID: attribute definitions, key schema,
// global and local secondary indexes with their projections, and the stream
// specification. BillingMode is always PAY_PER_REQUEST. A non-empty tableName
// replaces the template's table name.
func (t *Template) CreateTableInput(logicalID, tableName string) (*dynamodb.CreateTableInput, error) {
	tbl, err := t.cf.GetDynamoDBTableWithName(logicalID)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: CreateTableInput: %w", err)
	}
	if tableName == "" && tbl.TableName != nil {
		tableName = *tbl.TableName
	}
	if tableName == "" {
		return nil, fmt.Errorf("samtemplate: CreateTableInput: table %s has no name and none was given", logicalID)
	}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(tableName),
		BillingMode: ddbtypes.BillingModePayPerRequest,
	}
	for _, ad := range tbl.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{
			AttributeName: aws.String(ad.AttributeName),
			AttributeType: ddbtypes.ScalarAttributeType(ad.AttributeType),
		})
	}
	in.KeySchema = keySchema(tbl.KeySchema)
	for _, g := range tbl.GlobalSecondaryIndexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, ddbtypes.GlobalSecondaryIndex{
			IndexName:  aws.String(g.IndexName),
			KeySchema:  keySchema(g.KeySchema),
			Projection: projection(g.Projection),
		})
	}
	for _, l := range tbl.LocalSecondaryIndexes {
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, ddbtypes.LocalSecondaryIndex{
			IndexName:  aws.String(l.IndexName),
			KeySchema:  keySchema(l.KeySchema),
			Projection: projection(l.Projection),
		})
	}
	if s := tbl.StreamSpecification; s != nil && s.StreamViewType != "" {
		in.StreamSpecification = &ddbtypes.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: ddbtypes.StreamViewType(s.StreamViewType),
		}
	}
	return in, nil
}

// TableTTLAttribute returns the TTL attribute of the AWS::DynamoDB::Table
// resource logicalID, or "" when it has none (or it is disabled).
func (t *Template) TableTTLAttribute(logicalID string) string {
	tbl, err := t.cf.GetDynamoDBTableWithName(logicalID)
	if err != nil || tbl.TimeToLiveSpecification == nil || !tbl.TimeToLiveSpecification.Enabled {
		return ""
	}
	return aws.ToString(tbl.TimeToLiveSpecification.AttributeName)
}

func keySchema(in []cfddb.Table_KeySchema) []ddbtypes.KeySchemaElement {
	var out []ddbtypes.KeySchemaElement
	for _, k := range in {
		out = append(out, ddbtypes.KeySchemaElement{
			AttributeName: aws.String(k.AttributeName),
			KeyType:       ddbtypes.KeyType(k.KeyType),
		})
	}
	return out
}

func projection(in *cfddb.Table_Projection) *ddbtypes.Projection {
	if in == nil {
		return nil
	}
	p := &ddbtypes.Projection{NonKeyAttributes: in.NonKeyAttributes}
	if in.ProjectionType != nil {
		p.ProjectionType = ddbtypes.ProjectionType(*in.ProjectionType)
	}
	return p
}

// section returns a top-level section of the raw template as a map.
func (t *Template) section(name string) map[string]any {
	m, _ := t.raw[name].(map[string]any)
	return m
}

// resource returns the raw resource logicalID, or nil.
func (t *Template) resource(logicalID string) map[string]any {
	m, _ := t.section("Resources")[logicalID].(map[string]any)
	return m
}

func (t *Template) resourceIDs(typ string) []string {
	var ids []string
	for id, r := range t.section("Resources") {
		if m, ok := r.(map[string]any); ok && m["Type"] == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// functionProperties returns a function's raw Properties with
// Globals.Function merged in the way SAM merges them.
func (t *Template) functionProperties(logicalID string) (map[string]any, error) {
	res := t.resource(logicalID)
	if res == nil || res["Type"] != typeFunction {
		return nil, fmt.Errorf("no %s named %q", typeFunction, logicalID)
	}
	props, _ := res["Properties"].(map[string]any)
	globals, _ := t.section("Globals")["Function"].(map[string]any)
	merged, _ := mergeGlobals(globals, props).(map[string]any)
	if merged == nil {
		merged = map[string]any{}
	}
	return merged, nil
}

// mergeGlobals merges a Globals value with a resource's own value the way SAM
// does: maps merge key by key (the resource wins), lists are concatenated
// (Globals first), and anything else, intrinsic functions included, is taken
// from the resource when it sets it.
func mergeGlobals(global, local any) any {
	if global == nil {
		return local
	}
	if local == nil {
		return global
	}
	gm, gok := global.(map[string]any)
	lm, lok := local.(map[string]any)
	if gok && lok && !isIntrinsic(gm) && !isIntrinsic(lm) {
		out := make(map[string]any, len(gm)+len(lm))
		for k, v := range gm {
			out[k] = v
		}
		for k, v := range lm {
			out[k] = mergeGlobals(gm[k], v)
		}
		return out
	}
	gl, gok := global.([]any)
	ll, lok := local.([]any)
	if gok && lok {
		return append(append([]any{}, gl...), ll...)
	}
	return local
}

func isIntrinsic(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// collectRoutes reads every HttpApi event of every function.
func (t *Template) collectRoutes() ([]routeEvent, error) {
	var out []routeEvent
	for _, id := range t.FunctionIDs() {
		props, _ := t.resource(id)["Properties"].(map[string]any)
		events, _ := props["Events"].(map[string]any)
		for name, e := range events {
			ev, _ := e.(map[string]any)
			if ev["Type"] != "HttpApi" {
				continue
			}
			p, _ := ev["Properties"].(map[string]any)
			method, mok := p["Method"].(string)
			path, pok := p["Path"].(string)
			if !mok || !pok {
				return nil, fmt.Errorf("function %s: event %s: Method and Path must be plain strings", id, name)
			}
			out = append(out, routeEvent{
				Route: Route{LogicalID: id, Method: strings.ToUpper(method), Path: path},
				event: p,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		if out[i].Method != out[j].Method {
			return out[i].Method < out[j].Method
		}
		return out[i].LogicalID < out[j].LogicalID
	})
	for i := 1; i < len(out); i++ {
		if out[i].Method == out[i-1].Method && out[i].Path == out[i-1].Path {
			return nil, fmt.Errorf("route %s %s is declared by both %s and %s",
				out[i].Method, out[i].Path, out[i-1].LogicalID, out[i].LogicalID)
		}
	}
	return out, nil
}

// noValue is what Ref AWS::NoValue evaluates to: the property is left out.
type noValue struct{}

// evaluator resolves intrinsic functions in raw template values.
type evaluator struct {
	t     *Template
	refs  map[string]string
	depth int
	// lenient resolves a resource that refs does not name to its logical
	// id (Ref) or "Id.Attr" (GetAtt), for callers that wire resources by name.
	lenient bool
}

const maxDepth = 64

func (e *evaluator) eval(v any) (any, error) {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return nil, errors.New("intrinsic functions nest too deeply (a condition cycle?)")
	}
	switch x := v.(type) {
	case map[string]any:
		if isIntrinsic(x) {
			for fn, arg := range x {
				return e.intrinsic(fn, arg)
			}
		}
		out := make(map[string]any, len(x))
		for k, val := range x {
			r, err := e.eval(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if _, omit := r.(noValue); !omit {
				out[k] = r
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for i, val := range x {
			r, err := e.eval(val)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if _, omit := r.(noValue); !omit {
				out = append(out, r)
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

func (e *evaluator) intrinsic(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, errors.New("Ref: argument is not a string")
		}
		return e.ref(name)
	case "Fn::GetAtt":
		var parts []string
		switch a := arg.(type) {
		case string:
			parts = strings.SplitN(a, ".", 2)
		case []any:
			for _, p := range a {
				s, err := e.evalString(p)
				if err != nil {
					return nil, fmt.Errorf("Fn::GetAtt: %w", err)
				}
				parts = append(parts, s)
			}
		}
		if len(parts) != 2 {
			return nil, errors.New("Fn::GetAtt: want Resource.Attribute")
		}
		return e.getAtt(parts[0], parts[1])
	case "Fn::Sub":
		return e.sub(arg)
	case "Fn::If":
		a, ok := arg.([]any)
		if !ok || len(a) != 3 {
			return nil, errors.New("Fn::If: want [condition, value if true, value if false]")
		}
		name, ok := a[0].(string)
		if !ok {
			return nil, errors.New("Fn::If: condition name is not a string")
		}
		c, err := e.condition(name)
		if err != nil {
			return nil, fmt.Errorf("Fn::If: %w", err)
		}
		if c {
			return e.eval(a[1])
		}
		return e.eval(a[2])
	case "Fn::Join":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, errors.New("Fn::Join: want [delimiter, list]")
		}
		delim, err := e.evalString(a[0])
		if err != nil {
			return nil, fmt.Errorf("Fn::Join: %w", err)
		}
		items, err := e.stringList(a[1])
		if err != nil {
			return nil, fmt.Errorf("Fn::Join: %w", err)
		}
		return strings.Join(items, delim), nil
	case "Fn::Split":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, errors.New("Fn::Split: want [delimiter, string]")
		}
		delim, err := e.evalString(a[0])
		if err != nil {
			return nil, fmt.Errorf("Fn::Split: %w", err)
		}
		src, err := e.evalString(a[1])
		if err != nil {
			return nil, fmt.Errorf("Fn::Split: %w", err)
		}
		var out []any
		for _, s := range strings.Split(src, delim) {
			out = append(out, s)
		}
		return out, nil
	case "Fn::Select":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, errors.New("Fn::Select: want [index, list]")
		}
		is, err := e.evalString(a[0])
		if err != nil {
			return nil, fmt.Errorf("Fn::Select: %w", err)
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return nil, fmt.Errorf("Fn::Select: index: %w", err)
		}
		l, err := e.eval(a[1])
		if err != nil {
			return nil, fmt.Errorf("Fn::Select: %w", err)
		}
		list, ok := l.([]any)
		if !ok || i < 0 || i >= len(list) {
			return nil, fmt.Errorf("Fn::Select: index %d out of range", i)
		}
		return list[i], nil
	case "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition":
		return e.conditionExpr(map[string]any{fn: arg})
	default:
		return nil, fmt.Errorf("%s is not supported", fn)
	}
}

func (e *evaluator) ref(name string) (any, error) {
	if v, ok := e.refs[name]; ok {
		return v, nil
	}
	if name == "AWS::NoValue" {
		return noValue{}, nil
	}
	if p, ok := e.t.section("Parameters")[name].(map[string]any); ok {
		if v, ok := e.t.params[name]; ok {
			return v, nil
		}
		if d, ok := p["Default"]; ok {
			return scalarString(d)
		}
		return nil, fmt.Errorf("parameter %s has no value (no default; pass it to Load or in refs)", name)
	}
	if v, ok := PseudoParameters[name]; ok {
		return v, nil
	}
	if e.t.resource(name) != nil {
		if e.lenient {
			return name, nil
		}
		return nil, fmt.Errorf("no value for Ref %s (pass it in refs)", name)
	}
	return nil, fmt.Errorf("Ref %s: no such parameter or resource", name)
}

func (e *evaluator) getAtt(res, attr string) (any, error) {
	if v, ok := e.refs[res+"."+attr]; ok {
		return v, nil
	}
	if e.t.resource(res) == nil {
		return nil, fmt.Errorf("Fn::GetAtt %s.%s: no such resource", res, attr)
	}
	if e.lenient {
		return res + "." + attr, nil
	}
	return nil, fmt.Errorf("no value for Fn::GetAtt %s.%s (pass refs[%q])", res, attr, res+"."+attr)
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (e *evaluator) sub(arg any) (any, error) {
	var src string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		src = a
	case []any:
		if len(a) != 2 {
			return nil, errors.New("Fn::Sub: want string or [string, variables]")
		}
		s, ok := a[0].(string)
		m, mok := a[1].(map[string]any)
		if !ok || !mok {
			return nil, errors.New("Fn::Sub: want string or [string, variables]")
		}
		src, vars = s, m
	default:
		return nil, errors.New("Fn::Sub: want string or [string, variables]")
	}
	var firstErr error
	out := subVar.ReplaceAllStringFunc(src, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}" // ${!Literal} is written as ${Literal}
		}
		var (
			v   any
			err error
		)
		switch {
		case vars[name] != nil:
			v, err = e.eval(vars[name])
		case strings.Contains(name, "."):
			parts := strings.SplitN(name, ".", 2)
			v, err = e.getAtt(parts[0], parts[1])
		default:
			v, err = e.ref(name)
		}
		var s string
		if err == nil {
			s, err = scalarString(v)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		return s
	})
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// condition evaluates the named condition of the template's Conditions.
func (e *evaluator) condition(name string) (bool, error) {
	c, ok := e.t.section("Conditions")[name]
	if !ok {
		return false, fmt.Errorf("no condition named %q", name)
	}
	b, err := e.conditionExpr(c)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	return b, nil
}

func (e *evaluator) conditionExpr(c any) (bool, error) {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return false, errors.New("conditions nest too deeply (a cycle?)")
	}
	if b, ok := c.(bool); ok {
		return b, nil
	}
	m, ok := c.(map[string]any)
	if !ok || len(m) != 1 {
		return false, errors.New("not a condition expression")
	}
	for fn, arg := range m {
		if fn == "Condition" {
			name, ok := arg.(string)
			if !ok {
				return false, errors.New("Condition: name is not a string")
			}
			return e.condition(name)
		}
		args, ok := arg.([]any)
		if !ok {
			return false, fmt.Errorf("%s: argument is not a list", fn)
		}
		switch fn {
		case "Fn::Equals":
			if len(args) != 2 {
				return false, errors.New("Fn::Equals: want two values")
			}
			a, err := e.evalString(args[0])
			if err != nil {
				return false, fmt.Errorf("Fn::Equals: %w", err)
			}
			b, err := e.evalString(args[1])
			if err != nil {
				return false, fmt.Errorf("Fn::Equals: %w", err)
			}
			return a == b, nil
		case "Fn::Not":
			if len(args) != 1 {
				return false, errors.New("Fn::Not: want one condition")
			}
			b, err := e.conditionExpr(args[0])
			return !b, err
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			result := and
			for _, a := range args {
				b, err := e.conditionExpr(a)
				if err != nil {
					return false, fmt.Errorf("%s: %w", fn, err)
				}
				if and {
					result = result && b
				} else {
					result = result || b
				}
			}
			return result, nil
		}
		return false, fmt.Errorf("%s is not a condition function", fn)
	}
	return false, errors.New("empty condition")
}

// evalString evaluates v and requires a scalar result.
func (e *evaluator) evalString(v any) (string, error) {
	r, err := e.eval(v)
	if err != nil {
		return "", err
	}
	return scalarString(r)
}

// optionalString is evalString, with a missing value (nil or AWS::NoValue)
// giving "".
func (e *evaluator) optionalString(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	r, err := e.eval(v)
	if err != nil {
		return "", err
	}
	if _, omit := r.(noValue); omit {
		return "", nil
	}
	return scalarString(r)
}

// stringList evaluates v and requires a list of scalars.
func (e *evaluator) stringList(v any) ([]string, error) {
	r, err := e.eval(v)
	if err != nil {
		return nil, err
	}
	list, ok := r.([]any)
	if !ok {
		return nil, errors.New("not a list")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, err := scalarString(x)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case json.Number:
		return x.String(), nil
	case nil:
		return "", errors.New("value is null")
	default:
		return "", fmt.Errorf("value is a %T, not a scalar", v)
	}
}
