// Command verifier sets trust_state from the registry on registration and
// on requested re-verification.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/workers"
)

func main() { lambda.Start(workers.MustVerifier().Handle) }
