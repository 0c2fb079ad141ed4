// Package bus is the local EventBridge: PutEvents on the AWS JSON protocol, rule pattern matching, and asynchronous retried delivery to function targets with a dead-letter record.
package bus
