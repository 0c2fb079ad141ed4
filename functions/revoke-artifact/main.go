// Command revoke-artifact is the Lambda function behind the revoke-artifact route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("revoke-artifact").Handle) }
