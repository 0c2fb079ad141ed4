// Command get-publish-intent is the Lambda function behind the get-publish-intent route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("get-publish-intent").Handle) }
