package obs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Service is the log field operators query by.
const Service = "gpuaas-api"

// Namespace is the CloudWatch metrics namespace.
const Namespace = "GPUaaS/AppArtifacts"

// NewLogger returns the JSON logger every function uses, with service set.
func NewLogger(w io.Writer, function string) *slog.Logger {
	if w == nil {
		w = os.Stdout
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{})).With("service", Service, "function", function)
}

// RequestLine is the one line logged per request.
type RequestLine struct {
	CorrelationID string
	TraceID       string
	RequestID     string
	Method        string
	Route         string
	Path          string
	Status        int
	ErrorCode     string
	ErrorReason   string
	ProjectID     string
	ArtifactID    string
	PrincipalID   string
	Latency       time.Duration
	DynamoDBCalls int64
	Replayed      bool
}

// Log writes the request line. It is also an Embedded Metric Format record:
// latency_ms and dynamodb_calls become metrics by function and status class.
func (l RequestLine) Log(ctx context.Context, logger *slog.Logger, msg string, internal error) {
	level := slog.LevelInfo
	switch {
	case l.Status >= 500:
		level = slog.LevelError
	case l.Status >= 400:
		level = slog.LevelWarn
	}
	ms := float64(l.Latency.Microseconds()) / 1000
	statusClass := string(rune('0'+l.Status/100)) + "xx"
	attrs := []any{
		"correlation_id", l.CorrelationID, "trace_id", l.TraceID, "request_id", l.RequestID,
		"method", l.Method, "route", l.Route, "path", l.Path, "status", l.Status, "status_class", statusClass,
		"error_code", l.ErrorCode, "error_reason", l.ErrorReason, "project_id", l.ProjectID, "artifact_id", l.ArtifactID,
		"principal_id", l.PrincipalID, "latency_ms", ms, "dynamodb_calls", l.DynamoDBCalls,
		"idempotent_replayed", l.Replayed,
		"_aws", map[string]any{
			"Timestamp": time.Now().UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  Namespace,
				"Dimensions": [][]string{{"function", "status_class"}},
				"Metrics": []any{
					map[string]any{"Name": "latency_ms", "Unit": "Milliseconds"},
					map[string]any{"Name": "dynamodb_calls", "Unit": "Count"},
				},
			}},
		},
	}
	if internal != nil {
		attrs = append(attrs, "internal_error", internal.Error())
	}
	logger.Log(ctx, level, msg, attrs...)
}

// TraceID picks the trace id of a request: X-Amzn-Trace-Id's Root, then the
// Lambda environment's _X_AMZN_TRACE_ID, then W3C traceparent.
func TraceID(header func(string) string) string {
	if root := xrayRoot(header("x-amzn-trace-id")); root != "" {
		return root
	}
	if root := xrayRoot(os.Getenv("_X_AMZN_TRACE_ID")); root != "" {
		return root
	}
	if tp := header("traceparent"); tp != "" {
		parts := strings.Split(tp, "-")
		if len(parts) == 4 && len(parts[1]) == 32 {
			return parts[1]
		}
	}
	return ""
}

func xrayRoot(h string) string {
	for _, part := range strings.Split(h, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "Root="); ok {
			return v
		}
	}
	return ""
}
