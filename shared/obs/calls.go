package obs

import (
	"context"
	"sync/atomic"

	"github.com/aws/smithy-go/middleware"
)

type callsKey struct{}

// WithCallCounter returns a context whose AWS SDK calls are counted.
func WithCallCounter(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, callsKey{}, n), n
}

// CountCalls is an SDK API option that counts every attempt (every round
// trip, retries included) against the counter in the request context.
func CountCalls(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("gpuaas.CountCalls",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if n, ok := ctx.Value(callsKey{}).(*atomic.Int64); ok {
				n.Add(1)
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}
