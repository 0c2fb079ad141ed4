// Command get-artifact-policy is the Lambda function behind the get-artifact-policy route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("get-artifact-policy").Handle) }
