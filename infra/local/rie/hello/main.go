// Command hello is the cold-start baseline of BenchmarkColdStart: the
// smallest aws-lambda-go function answering an HTTP API event, built with the
// same flags as the project's functions (SPEC section 10).
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return events.APIGatewayV2HTTPResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       `{"message":"hello"}`,
	}, nil
}

func main() { lambda.Start(handle) }
