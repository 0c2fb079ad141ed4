// Package obs is the service's observability: the one JSON log line per
// request (with CloudWatch Embedded Metric Format metrics), trace ids, and a
// per-request count of DynamoDB round trips taken from SDK middleware.
package obs
