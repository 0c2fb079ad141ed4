// Command create-publish-intent is the Lambda function behind the
// create-publish-intent route; it alone is wired with ECR, to create the
// repositories it hands out.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/ecr"
)

func main() {
	lambda.Start(app.MustHTTPHandler("create-publish-intent", app.WithRepositories(ecr.FromConfig)).Handle)
}
