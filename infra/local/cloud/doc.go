// Package cloud is the local stand-in for the AWS services the functions use:
// a DynamoDB endpoint (minidyn) with the template's table and saved state,
// an HTTP API emulation with its JWT authorizer routed from template.yaml,
// all bound to 127.0.0.1.
package cloud
