// Command publisher relays audit rows from the table's stream to EventBridge.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/gpuaas/app-artifacts/shared/workers"
)

func main() { lambda.Start(workers.MustPublisher().Handle) }
