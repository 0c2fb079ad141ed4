// Command list-artifacts is the Lambda function behind the list-artifacts route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("list-artifacts").Handle) }
