package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// translate maps an AWS error to a domain error: throttling and
// unavailability become service_unavailable (retryable), everything else is
// internal. The AWS text never reaches the caller.
func translate(op string, err error) error {
	wrapped := fmt.Errorf("%s: %w", op, err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return artifact.Unavailable("dependency_timeout", wrapped)
	}
	if _, ok := errors.AsType[*retry.MaxAttemptsError](err); ok {
		return artifact.Unavailable("throttled", wrapped)
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		switch ae.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "LimitExceededException":
			return artifact.Unavailable("throttled", wrapped)
		case "InternalServerError", "ServiceUnavailable", "InternalFailure", "TransactionInProgressException":
			return artifact.Unavailable("dependency_unavailable", wrapped)
		}
		return artifact.Internal(wrapped)
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return artifact.Unavailable("dependency_unavailable", wrapped)
	}
	if _, ok := errors.AsType[*smithy.OperationError](err); ok {
		// A transport failure under the SDK (connection refused, reset).
		return artifact.Unavailable("dependency_unavailable", wrapped)
	}
	return artifact.Internal(wrapped)
}
