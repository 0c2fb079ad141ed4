package registrar

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gpuaas/app-artifacts/shared/ecr"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
)

// Manifests reads what the registry reports for a digest (ECR BatchGetImage).
type Manifests interface {
	ImageManifest(ctx context.Context, repository, digest string) ([]byte, string, error)
}

// Registrar handles ECR "ECR Image Action" events.
type Registrar struct {
	Service   *lifecycle.Service
	Manifests Manifests
	Logger    *slog.Logger
	Now       func() time.Time
}

// Outcomes besides lifecycle's Push* ones.
const (
	ignored   = "ignored"
	imageGone = "image_gone"
)

// Handle is the Lambda entry point. It returns an error only for transient
// failures (the rule retries, then dead-letters); every other outcome is
// logged with its reason and counted in the line's metrics.
func (g *Registrar) Handle(ctx context.Context, ev events.ECRImageActionEvent) error {
	start := g.Now()
	ctx, calls := obs.WithCallCounter(ctx)
	d := ev.Detail
	res, err := g.handle(ctx, ev)
	attrs := []any{"event_id", ev.ID, "repository_name", d.RepositoryName, "image_tag", d.ImageTag, "image_digest", d.ImageDigest,
		"outcome", res.Outcome, "artifact_id", res.ArtifactID, "dynamodb_calls", calls.Load(),
		"latency_ms", float64(g.Now().Sub(start).Microseconds()) / 1000,
		"_aws", map[string]any{"Timestamp": time.Now().UnixMilli(), "CloudWatchMetrics": []any{map[string]any{
			"Namespace": obs.Namespace, "Dimensions": [][]string{{"function", "outcome"}},
			"Metrics": []any{map[string]any{"Name": "pushes", "Unit": "Count"}},
		}}}, "pushes", 1,
	}
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	if err != nil {
		g.Logger.ErrorContext(ctx, "push registration failed transiently; the event will be retried", append(attrs, "error", err.Error())...)
		return err
	}
	g.Logger.InfoContext(ctx, "push", attrs...)
	return nil
}

func (g *Registrar) handle(ctx context.Context, ev events.ECRImageActionEvent) (lifecycle.PushResult, error) {
	d := ev.Detail
	if d.ActionType != "PUSH" || d.Result != "SUCCESS" || !strings.HasPrefix(d.RepositoryName, "gpuaas/") || d.ImageTag == "" || d.ImageDigest == "" {
		return lifecycle.PushResult{Outcome: ignored}, nil
	}
	_, mediaType, err := g.Manifests.ImageManifest(ctx, d.RepositoryName, d.ImageDigest)
	if errors.Is(err, ecr.ErrNotFound) {
		return lifecycle.PushResult{Outcome: imageGone}, nil // deleted since the push: nothing to register
	}
	if err != nil {
		return lifecycle.PushResult{}, err
	}
	return g.Service.RegisterPush(ctx, lifecycle.Push{
		RepositoryName: d.RepositoryName, Tag: d.ImageTag, Digest: d.ImageDigest, MediaType: mediaType, EventID: ev.ID,
	})
}
