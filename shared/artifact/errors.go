package artifact

import (
	"errors"
	"fmt"
)

// Code is a stable, caller-visible error class. The set is fixed by the
// product contract and mirrored in the OpenAPI document.
type Code string

// The error classes of the contract.
const (
	CodeInvalidRequest          Code = "invalid_request"
	CodeInsufficientPermissions Code = "insufficient_permissions"
	CodeNotFound                Code = "app_artifact_not_found"
	CodeAlreadyExists           Code = "app_artifact_already_exists"
	CodeStateInvalid            Code = "app_artifact_state_invalid"
	CodeServiceUnavailable      Code = "service_unavailable"
	CodeUpstream                Code = "upstream_error"
	CodeInternal                Code = "internal_error"
)

// Error is the one error type of the service. Message and Details are shown to
// the caller, so they never carry internal text; the wrapped Err is logged only.
type Error struct {
	Code    Code
	Status  int // optional override of the code's default HTTP status (413, 422)
	Message string
	Details map[string]any
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Reason returns details.reason, or "".
func (e *Error) Reason() string {
	if r, ok := e.Details["reason"].(string); ok {
		return r
	}
	return ""
}

// Errorf builds an *Error with a reason in its details. Extra key/value pairs
// are added to details.
func Errorf(code Code, reason, msg string, kv ...any) *Error {
	d := map[string]any{}
	if reason != "" {
		d["reason"] = reason
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok {
			d[k] = kv[i+1]
		}
	}
	return &Error{Code: code, Message: msg, Details: d}
}

// Invalid is shorthand for a 400 invalid_request naming the offending field.
func Invalid(reason, field, msg string) *Error {
	if field == "" {
		return Errorf(CodeInvalidRequest, reason, msg)
	}
	return Errorf(CodeInvalidRequest, reason, msg, "field", field)
}

// Forbidden is shorthand for a 403.
func Forbidden(reason, msg string, kv ...any) *Error {
	return Errorf(CodeInsufficientPermissions, reason, msg, kv...)
}

// Unavailable wraps a storage failure the caller may retry.
func Unavailable(reason string, err error) *Error {
	e := Errorf(CodeServiceUnavailable, reason, "the artifact store is temporarily unavailable; retry after Retry-After seconds (a mutation with the same idempotency key)")
	e.Err = err
	return e
}

// Internal wraps a defect. The message reveals nothing.
func Internal(err error) *Error {
	return &Error{Code: CodeInternal, Message: "internal error", Details: map[string]any{}, Err: err}
}

// ErrorCode returns the code of err, internal_error for anything that is not an *Error.
func ErrorCode(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// AsError returns err as an *Error, converting foreign errors to internal_error.
func AsError(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return Internal(err)
}
