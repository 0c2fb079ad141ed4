// Package contracttest validates HTTP responses against the OpenAPI contract in doc/api/openapi.draft.yaml.
package contracttest
