package artifact

import (
	"slices"
	"time"
)

// Action is something that changes an artifact's lifecycle or trust.
type Action string

// Actions. The first five are requested through the API; the verification
// outcomes are set only by the verifier.
const (
	ActionPromote                  Action = "promote"
	ActionDeprecate                Action = "deprecate"
	ActionRetire                   Action = "retire"
	ActionRevoke                   Action = "revoke"
	ActionRequestVerify            Action = "verify"
	ActionVerificationPass         Action = "verification_passed"
	ActionVerificationFail         Action = "verification_failed"
	auditPrefix                           = "app_artifact."
	TrustReasonRevoked                    = "revoked"
	ReasonTrustQuarantine                 = "trust_quarantine"
	ReasonLifecycleInvalid                = "lifecycle_transition_invalid"
	ReasonTrustInvalid                    = "trust_transition_invalid"
	ReasonChannelRequiresTrust            = "channel_requires_verified_trust"
	ReasonUnknownChannel                  = "unknown_channel"
	ReasonChannelRequiresSignature        = "channel_requires_signature"
	trustOwner                            = "platform artifact trust owners (trust_admin): request re-verification or revoke; do not work around a trust failure"
)

// Actions lists every action, for exhaustive tests.
var Actions = []Action{ActionPromote, ActionDeprecate, ActionRetire, ActionRevoke, ActionRequestVerify, ActionVerificationPass, ActionVerificationFail}

// requestable are the actions an API caller may ask for, reported in errors.
var requestable = []Action{ActionPromote, ActionDeprecate, ActionRetire, ActionRevoke, ActionRequestVerify}

// AuditAction is the audit row action for a.
func (a Action) AuditAction() string {
	switch a {
	case ActionVerificationPass, ActionVerificationFail:
		return auditPrefix + "verify"
	case ActionRequestVerify:
		return auditPrefix + "verify"
	}
	return auditPrefix + string(a)
}

// Command is a requested transition.
type Command struct {
	Action  Action
	Channel string // promote
	Reason  string // caller's free text (deprecate, retire, revoke) or verification reason code
	KeyID   string // verification passed with a signature by this trusted key
}

// Quarantined reports whether trust forbids lifecycle moves.
func Quarantined(t TrustState) bool { return t == FailedVerification || t == Revoked }

// Apply decides cmd against a under policy. It returns the artifact after the
// change, or changed=false for an accepted no-op (promoting into a channel the
// artifact is already in). a is not modified. Revision and UpdatedAt advance
// only when changed.
func Apply(a *Artifact, cmd Command, policy *Policy, now time.Time) (next *Artifact, changed bool, err error) {
	if err := check(a, cmd, policy); err != nil {
		// Every refused promotion names the channel asked for: the
		// runbook's triage starts from the intended promotion target.
		if e, ok := err.(*Error); ok && cmd.Action == ActionPromote && e.Details != nil {
			e.Details["channel"] = cmd.Channel
		}
		return nil, false, err
	}
	n := a.Clone()
	switch cmd.Action {
	case ActionPromote:
		if slices.Contains(n.Channels, cmd.Channel) {
			return n, false, nil
		}
		n.Lifecycle = Promoted
		n.Channels = append(n.Channels, cmd.Channel)
	case ActionDeprecate:
		n.Lifecycle = Deprecated
	case ActionRetire:
		// A retired artifact is out of every channel: nothing may select it.
		n.Lifecycle = Retired
		n.Channels = []string{}
	case ActionRevoke:
		n.Trust = Revoked
		r := TrustReasonRevoked
		n.TrustReason = &r
	case ActionRequestVerify:
		n.Trust = Unverified
		n.TrustReason = nil
	case ActionVerificationPass:
		n.Trust = Verified
		n.TrustReason = nil
		if cmd.KeyID != "" {
			k := cmd.KeyID
			n.SignatureKeyID = &k
		}
	case ActionVerificationFail:
		n.Trust = FailedVerification
		r := cmd.Reason
		n.TrustReason = &r
	}
	n.Revision++
	n.UpdatedAt = now
	return n, true, nil
}

func check(a *Artifact, cmd Command, policy *Policy) error {
	switch cmd.Action {
	case ActionPromote:
		ch, ok := policy.Channel(cmd.Channel)
		if !ok {
			return Invalid(ReasonUnknownChannel, "channel", "channel is not defined by the project's policy")
		}
		if Quarantined(a.Trust) {
			return quarantine(a, cmd.Action)
		}
		if a.Lifecycle != Published && a.Lifecycle != Promoted {
			return stateInvalid(a, cmd.Action, ReasonLifecycleInvalid, "a "+string(a.Lifecycle)+" artifact cannot be promoted")
		}
		if ch.SignatureRequired && a.SignatureKeyID == nil {
			e := stateInvalid(a, cmd.Action, ReasonChannelRequiresSignature, "channel "+ch.Name+" requires an artifact verified with a trusted signature")
			e.Details["channel"] = ch.Name
			return e
		}
		if !slices.Contains(ch.RequiredTrust, a.Trust) {
			e := stateInvalid(a, cmd.Action, ReasonChannelRequiresTrust, "channel "+ch.Name+" requires a stronger trust state")
			e.Details["channel"] = ch.Name
			e.Details["required_trust_states"] = trustStrings(ch.RequiredTrust)
			return e
		}
	case ActionDeprecate:
		if Quarantined(a.Trust) {
			return quarantine(a, cmd.Action)
		}
		if a.Lifecycle != Published && a.Lifecycle != Promoted {
			return stateInvalid(a, cmd.Action, ReasonLifecycleInvalid, "only published or promoted artifacts can be deprecated")
		}
	case ActionRetire:
		if a.Lifecycle != Deprecated {
			return stateInvalid(a, cmd.Action, ReasonLifecycleInvalid, "only deprecated artifacts can be retired")
		}
	case ActionRevoke:
		if a.Trust == Revoked {
			return stateInvalid(a, cmd.Action, ReasonTrustInvalid, "the artifact is already revoked; revocation is final")
		}
	case ActionRequestVerify:
		if a.Trust != FailedVerification {
			return stateInvalid(a, cmd.Action, ReasonTrustInvalid, "re-verification applies only to artifacts that failed verification")
		}
	case ActionVerificationPass, ActionVerificationFail:
		if a.Trust != Unverified {
			return stateInvalid(a, cmd.Action, ReasonTrustInvalid, "only unverified artifacts receive a verification verdict")
		}
	default:
		return Invalid("unknown_action", "action", "unknown action")
	}
	return nil
}

// AllowedActions lists the API actions the artifact's current state admits
// (promotion assumes a channel whose trust requirement it meets).
func AllowedActions(a *Artifact) []string {
	out := []string{}
	active := a.Lifecycle == Published || a.Lifecycle == Promoted
	for _, act := range requestable {
		ok := false
		switch act {
		case ActionPromote, ActionDeprecate:
			ok = active && !Quarantined(a.Trust)
		case ActionRetire:
			ok = a.Lifecycle == Deprecated
		case ActionRevoke:
			ok = a.Trust != Revoked
		case ActionRequestVerify:
			ok = a.Trust == FailedVerification
		}
		if ok {
			out = append(out, string(act))
		}
	}
	return out
}

func stateInvalid(a *Artifact, act Action, reason, msg string) *Error {
	return Errorf(CodeStateInvalid, reason, msg,
		"lifecycle_state", string(a.Lifecycle),
		"trust_state", string(a.Trust),
		"requested_action", string(act),
		"allowed_actions", AllowedActions(a),
	)
}

func quarantine(a *Artifact, act Action) *Error {
	e := stateInvalid(a, act, ReasonTrustQuarantine,
		"the artifact is quarantined by its trust state ("+string(a.Trust)+"); lifecycle changes are refused until trust is resolved")
	e.Details["escalate_to"] = trustOwner
	return e
}

func trustStrings(ts []TrustState) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}
