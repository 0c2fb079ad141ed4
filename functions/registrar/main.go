// Command registrar registers digests pushed to platform repositories
// against their open publish intents (ECR push events).
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/workers"
)

func main() { lambda.Start(workers.MustRegistrar().Handle) }
