// Package dynamo is the lifecycle Store over one DynamoDB table: the
// single-table keys, conditional transactions, consistent reads and list
// pages, and the translation of AWS errors into domain codes.
package dynamo
