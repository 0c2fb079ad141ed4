// Command create-publish-intent is the Lambda function behind the create-publish-intent route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
)

func main() { lambda.Start(app.MustHTTPHandler("create-publish-intent").Handle) }
