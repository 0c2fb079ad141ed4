package app

import "github.com/gpuaas/app-artifacts/shared/httpapi"

// Function is one Lambda function of the template: an HTTP route's, or an
// asynchronous one's (Trigger says what invokes it).
type Function struct {
	Name      string // functions/<Name>
	LogicalID string // template.yaml logical id
	Trigger   string // "http", "dynamodb-stream" or "eventbridge-rule"
}

// Async are the functions no route serves.
var Async = []Function{
	{Name: "publisher", LogicalID: "PublisherFunction", Trigger: "dynamodb-stream"},
	{Name: "verifier", LogicalID: "VerifierFunction", Trigger: "eventbridge-rule"},
	{Name: "registrar", LogicalID: "RegistrarFunction", Trigger: "eventbridge-rule"},
}

// Functions lists every function: the routes' and the asynchronous ones.
func Functions() []Function {
	var out []Function
	for _, r := range httpapi.Routes {
		out = append(out, Function{Name: r.Name, LogicalID: r.LogicalID, Trigger: "http"})
	}
	return append(out, Async...)
}
