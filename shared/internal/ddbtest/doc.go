// Package ddbtest starts minidyn's DynamoDB server in-process on loopback
// and creates tables from template.yaml's own table resource, so tests use
// the real aws-sdk-go-v2 client against the keys AWS gets.
package ddbtest
