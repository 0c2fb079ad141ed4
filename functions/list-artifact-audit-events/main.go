// Command list-artifact-audit-events is the Lambda function behind the list-artifact-audit-events route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("list-artifact-audit-events").Handle) }
