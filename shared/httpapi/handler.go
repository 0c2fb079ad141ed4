package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/gpuaas/app-artifacts/shared/artifact"
	"github.com/gpuaas/app-artifacts/shared/lifecycle"
	"github.com/gpuaas/app-artifacts/shared/obs"
)

// Handler serves one route.
type Handler struct {
	Route   *Route
	Service *lifecycle.Service
	Logger  *slog.Logger
	// NewCorrelationID makes an id when the caller sent no usable one.
	NewCorrelationID func() string
	Now              func() time.Time
}

var statusOf = map[artifact.Code]int{
	artifact.CodeInvalidRequest:          http.StatusBadRequest,
	artifact.CodeInsufficientPermissions: http.StatusForbidden,
	artifact.CodeNotFound:                http.StatusNotFound,
	artifact.CodeAlreadyExists:           http.StatusConflict,
	artifact.CodeStateInvalid:            http.StatusConflict,
	artifact.CodeServiceUnavailable:      http.StatusServiceUnavailable,
	artifact.CodeUpstream:                http.StatusBadGateway,
	artifact.CodeInternal:                http.StatusInternalServerError,
}

// StatusOf is the HTTP status of an error.
func StatusOf(e *artifact.Error) int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type envelope struct {
	Error envelopeBody `json:"error"`
}

type envelopeBody struct {
	Code          artifact.Code  `json:"code"`
	Message       string         `json:"message"`
	CorrelationID string         `json:"correlation_id"`
	Details       map[string]any `json:"details"`
}

// ErrorBody renders the error envelope. Internal errors show nothing of their cause.
func ErrorBody(e *artifact.Error, correlationID string) []byte {
	b := envelopeBody{Code: e.Code, Message: e.Message, CorrelationID: correlationID, Details: e.Details}
	if e.Code == artifact.CodeInternal || b.Details == nil {
		if e.Code == artifact.CodeInternal {
			b.Message = "internal error"
		}
		b.Details = map[string]any{}
	}
	out, err := json.Marshal(envelope{Error: b})
	if err != nil {
		out, _ = json.Marshal(envelope{Error: envelopeBody{Code: artifact.CodeInternal, Message: "internal error", CorrelationID: correlationID, Details: map[string]any{}}})
	}
	return out
}

func header(req *events.APIGatewayV2HTTPRequest, name string) string {
	if v, ok := req.Headers[name]; ok {
		return v
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// Handle is the Lambda entry point for the route.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (resp events.APIGatewayV2HTTPResponse, err error) {
	start := h.Now()
	ctx, calls := obs.WithCallCounter(ctx)
	cid := header(&req, "x-correlation-id")
	if !artifact.ValidToken(cid, 1, 128) {
		cid = h.NewCorrelationID()
	}
	line := obs.RequestLine{
		CorrelationID: cid, TraceID: obs.TraceID(func(n string) string { return header(&req, n) }),
		RequestID: req.RequestContext.RequestID, Method: h.Route.Method, Route: h.Route.Key(),
		Path: req.RawPath, ProjectID: req.PathParameters["project_id"], ArtifactID: req.PathParameters["artifact_id"],
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok && line.RequestID == "" {
		line.RequestID = lc.AwsRequestID
	}
	var res *lifecycle.Result
	var failure error
	func() {
		defer func() {
			if p := recover(); p != nil {
				failure = artifact.Internal(fmt.Errorf("httpapi: panic: %v", p))
			}
		}()
		res, failure = h.serve(ctx, &req, cid, &line)
	}()

	resp = events.APIGatewayV2HTTPResponse{Headers: map[string]string{
		"Content-Type": "application/json", "X-Correlation-ID": cid, "Cache-Control": "no-store",
	}}
	var internal error
	if failure != nil {
		e := artifact.AsError(failure)
		resp.StatusCode = StatusOf(e)
		resp.Body = string(ErrorBody(e, cid))
		line.ErrorCode = string(e.Code)
		line.ErrorReason = e.Reason()
		if e.Code == artifact.CodeServiceUnavailable {
			resp.Headers["Retry-After"] = "1"
		}
		if e.Code == artifact.CodeInternal || e.Code == artifact.CodeServiceUnavailable || e.Code == artifact.CodeUpstream {
			internal = e
		}
	} else {
		resp.StatusCode = res.Status
		resp.Body = string(res.Body)
		if res.Replayed {
			resp.Headers["Idempotent-Replayed"] = "true"
			line.Replayed = true
		}
		if res.ArtifactID != "" {
			line.ArtifactID = res.ArtifactID
		}
	}
	line.Status = resp.StatusCode
	line.Latency = h.Now().Sub(start)
	line.DynamoDBCalls = calls.Load()
	line.Log(ctx, h.Logger, "request", internal)
	return resp, nil
}

func (h *Handler) serve(ctx context.Context, req *events.APIGatewayV2HTTPRequest, cid string, line *obs.RequestLine) (*lifecycle.Result, error) {
	projectID := req.PathParameters["project_id"]
	if !artifact.ValidID(projectID) {
		return nil, artifact.Invalid("invalid_project_id", "project_id", "project_id in the path is not a valid project id")
	}
	switch hp := header(req, "x-project-id"); {
	case hp == "":
		return nil, artifact.Invalid("missing_project_id", "X-Project-ID", "X-Project-ID header is required")
	case hp != projectID:
		return nil, artifact.Errorf(artifact.CodeInvalidRequest, "project_context_mismatch",
			"X-Project-ID does not match the project in the path", "field", "X-Project-ID")
	}
	id, err := ParseIdentity(req)
	if err != nil {
		return nil, err
	}
	line.PrincipalID = id.Principal.PrincipalID
	r := &lifecycle.Request{
		Caller: lifecycle.Caller{
			Principal: id.Principal, OrgID: id.OrgID, Perms: id.Perms(projectID),
			CorrelationID: cid, TraceID: line.TraceID,
		},
		ProjectID: projectID,
	}
	if !r.Can(h.Route.Perm) {
		return nil, artifact.Forbidden("role_required", "the caller's roles do not grant this action on the project",
			"required_permission", string(h.Route.Perm), "roles_granting", artifact.RolesGranting(h.Route.Perm))
	}
	var in any
	if h.Route.Mutation() {
		key := header(req, "x-idempotency-key")
		if key == "" {
			return nil, artifact.Invalid("missing_idempotency_key", "X-Idempotency-Key", "X-Idempotency-Key header is required on every POST and PUT")
		}
		if !artifact.ValidIdempotencyKey(key) {
			return nil, artifact.Invalid("invalid_idempotency_key", "X-Idempotency-Key", "X-Idempotency-Key must be 8 to 128 characters of [A-Za-z0-9._:-]")
		}
		r.IdemKey = key
		if in, err = h.decode(req); err != nil {
			return nil, err
		}
		r.Fingerprint, err = fingerprint(h.Route, req.PathParameters, in)
		if err != nil {
			return nil, artifact.Internal(err)
		}
	} else if len(req.Body) > 0 {
		return nil, artifact.Invalid("unexpected_body", "", "this route takes no request body")
	}
	target := req.PathParameters["artifact_id"]
	if iid, ok := req.PathParameters["intent_id"]; ok {
		target = iid
	}
	return h.Route.run(ctx, h.Service, r, target, req.QueryStringParameters, in)
}

func (h *Handler) decode(req *events.APIGatewayV2HTTPRequest) (any, error) {
	body, err := rawBody(req.Body, req.IsBase64Encoded)
	if err != nil {
		return nil, err
	}
	in := h.Route.newInput()
	if len(strings.TrimSpace(string(body))) == 0 {
		if h.Route.bodyOptional {
			return in, nil
		}
		return nil, artifact.Invalid("malformed_json", "", "a JSON request body is required")
	}
	if err := decodeStrict(body, in); err != nil {
		return nil, err
	}
	return in, nil
}

// fingerprint identifies a request for idempotency: method, route, path
// parameters and the body in canonical form (the decoded input re-encoded,
// so whitespace, key order and explicit nulls do not matter).
func fingerprint(rt *Route, path map[string]string, in any) (string, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, s := range []string{rt.Method, rt.Path, path["project_id"], path["artifact_id"], string(body)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
