package artifact_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// outcome is what the contract (SPEC section 5) says an action does.
type outcome struct {
	lifecycle artifact.LifecycleState
	trust     artifact.TrustState
	channels  []string
	noop      bool
	code      artifact.Code // set when refused
	reason    string
}

const (
	P, Pr, D, R   = artifact.Published, artifact.Promoted, artifact.Deprecated, artifact.Retired
	U, V, F, Rev  = artifact.Unverified, artifact.Verified, artifact.FailedVerification, artifact.Revoked
	quarantine    = "trust_quarantine"
	lifecycleBad  = "lifecycle_transition_invalid"
	trustBad      = "trust_transition_invalid"
	needsVerified = "channel_requires_verified_trust"
)

var when = func(l artifact.LifecycleState, t artifact.TrustState) (bool, bool, bool) {
	active := l == P || l == Pr
	quarantined := t == F || t == Rev
	return active, quarantined, l == D
}

// expect is the contract written independently of the implementation.
func expect(l artifact.LifecycleState, t artifact.TrustState, cmd artifact.Command, channels []string) outcome {
	active, quarantined, deprecated := when(l, t)
	refuse := func(code artifact.Code, reason string) outcome { return outcome{code: code, reason: reason} }
	switch cmd.Action {
	case artifact.ActionPromote:
		switch {
		case cmd.Channel == "nope":
			return refuse(artifact.CodeInvalidRequest, "unknown_channel")
		case quarantined:
			return refuse(artifact.CodeStateInvalid, quarantine)
		case !active:
			return refuse(artifact.CodeStateInvalid, lifecycleBad)
		case cmd.Channel == "production" && t != V:
			return refuse(artifact.CodeStateInvalid, needsVerified)
		case slices.Contains(channels, cmd.Channel):
			return outcome{lifecycle: l, trust: t, channels: channels, noop: true}
		}
		return outcome{lifecycle: Pr, trust: t, channels: append(slices.Clone(channels), cmd.Channel)}
	case artifact.ActionDeprecate:
		switch {
		case quarantined:
			return refuse(artifact.CodeStateInvalid, quarantine)
		case !active:
			return refuse(artifact.CodeStateInvalid, lifecycleBad)
		}
		return outcome{lifecycle: D, trust: t, channels: channels}
	case artifact.ActionRetire:
		if !deprecated {
			return refuse(artifact.CodeStateInvalid, lifecycleBad)
		}
		return outcome{lifecycle: R, trust: t, channels: []string{}}
	case artifact.ActionRevoke:
		if t == Rev {
			return refuse(artifact.CodeStateInvalid, trustBad)
		}
		return outcome{lifecycle: l, trust: Rev, channels: channels}
	case artifact.ActionRequestVerify:
		if t != F {
			return refuse(artifact.CodeStateInvalid, trustBad)
		}
		return outcome{lifecycle: l, trust: U, channels: channels}
	case artifact.ActionVerificationPass, artifact.ActionVerificationFail:
		if t != U {
			return refuse(artifact.CodeStateInvalid, trustBad)
		}
		if cmd.Action == artifact.ActionVerificationPass {
			return outcome{lifecycle: l, trust: V, channels: channels}
		}
		return outcome{lifecycle: l, trust: F, channels: channels}
	}
	panic("unknown action")
}

func commands(a artifact.Action) []artifact.Command {
	if a == artifact.ActionPromote {
		return []artifact.Command{{Action: a, Channel: "dev"}, {Action: a, Channel: "staging"}, {Action: a, Channel: "production"}, {Action: a, Channel: "nope"}}
	}
	if a == artifact.ActionVerificationFail {
		return []artifact.Command{{Action: a, Reason: "digest_mismatch"}}
	}
	return []artifact.Command{{Action: a, Reason: "because"}}
}

func TestApplyEveryStateAndAction(t *testing.T) {
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	policy := artifact.DefaultPolicy()
	n := 0
	for _, l := range artifact.LifecycleStates {
		for _, tr := range artifact.TrustStates {
			channels := []string{}
			if l != P {
				channels = []string{"dev"}
			}
			if l == R {
				channels = []string{}
			}
			for _, act := range artifact.Actions {
				for _, cmd := range commands(act) {
					n++
					t.Run(fmt.Sprintf("%s/%s/%s/%s", l, tr, act, cmd.Channel), func(t *testing.T) {
						a := &artifact.Artifact{ArtifactID: "art_1", Lifecycle: l, Trust: tr, Channels: slices.Clone(channels), Revision: 3}
						want := expect(l, tr, cmd, channels)
						next, changed, err := artifact.Apply(a, cmd, policy, now)
						if a.Lifecycle != l || a.Trust != tr || a.Revision != 3 || !slices.Equal(a.Channels, channels) {
							t.Fatalf("Apply modified its input: %+v", a)
						}
						if want.code != "" {
							var e *artifact.Error
							if !errors.As(err, &e) {
								t.Fatalf("want %s/%s, got err=%v next=%+v", want.code, want.reason, err, next)
							}
							if diff := cmp.Diff([]string{string(want.code), want.reason}, []string{string(e.Code), e.Reason()}); diff != "" {
								t.Fatalf("error (-want +got):\n%s", diff)
							}
							if e.Code == artifact.CodeStateInvalid {
								for _, k := range []string{"lifecycle_state", "trust_state", "requested_action", "allowed_actions"} {
									if _, ok := e.Details[k]; !ok {
										t.Errorf("details lack %q: %v", k, e.Details)
									}
								}
							}
							return
						}
						if err != nil {
							t.Fatalf("unexpected error %v", err)
						}
						got := outcome{lifecycle: next.Lifecycle, trust: next.Trust, channels: next.Channels, noop: !changed}
						if diff := cmp.Diff(want, got, cmp.AllowUnexported(outcome{})); diff != "" {
							t.Fatalf("outcome (-want +got):\n%s", diff)
						}
						wantRev := int64(4)
						if want.noop {
							wantRev = 3
						}
						if next.Revision != wantRev {
							t.Fatalf("revision %d, want %d", next.Revision, wantRev)
						}
						if changed && !next.UpdatedAt.Equal(now) {
							t.Fatalf("updated_at not advanced")
						}
						if cmd.Action == artifact.ActionVerificationFail && (next.TrustReason == nil || *next.TrustReason != "digest_mismatch") {
							t.Fatalf("trust_reason %v", next.TrustReason)
						}
					})
				}
			}
		}
	}
	if n != 4*4*(4+6) {
		t.Fatalf("covered %d cases", n)
	}
}

func TestRetiredAndRevokedAreFinal(t *testing.T) {
	policy := artifact.DefaultPolicy()
	for _, act := range artifact.Actions {
		for _, cmd := range commands(act) {
			for _, tr := range artifact.TrustStates {
				a := &artifact.Artifact{Lifecycle: R, Trust: tr, Channels: []string{}}
				if next, changed, err := artifact.Apply(a, cmd, policy, time.Now()); err == nil && changed && next.Lifecycle != R {
					t.Errorf("retired left retired via %s", act)
				}
			}
			for _, l := range artifact.LifecycleStates {
				a := &artifact.Artifact{Lifecycle: l, Trust: Rev, Channels: []string{}}
				if next, changed, err := artifact.Apply(a, cmd, policy, time.Now()); err == nil && changed && next.Trust != Rev {
					t.Errorf("revoked left revoked via %s", act)
				}
			}
		}
	}
}

func TestAuditActions(t *testing.T) {
	got := map[artifact.Action]string{}
	for _, a := range artifact.Actions {
		got[a] = a.AuditAction()
	}
	want := map[artifact.Action]string{
		artifact.ActionPromote: "app_artifact.promote", artifact.ActionDeprecate: "app_artifact.deprecate",
		artifact.ActionRetire: "app_artifact.retire", artifact.ActionRevoke: "app_artifact.revoke",
		artifact.ActionRequestVerify: "app_artifact.verify", artifact.ActionVerificationPass: "app_artifact.verify",
		artifact.ActionVerificationFail: "app_artifact.verify",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatal(diff)
	}
}
