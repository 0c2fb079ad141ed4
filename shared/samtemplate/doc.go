// Package samtemplate reads the project's AWS SAM template so tests and the local cloud use the same routes, table and environment that AWS gets.
//
// The template is parsed twice: once by goformation (with the caller's
// parameter overrides, so a template goformation cannot read fails to load)
// for the typed view of resources such as the DynamoDB table, and once as raw
// YAML with its intrinsic functions kept, because goformation resolves a Ref
// to a resource as empty and does not merge Globals into functions. The raw
// view is what FunctionEnv, Function, Routes and RouteAuthorizer evaluate.
package samtemplate
