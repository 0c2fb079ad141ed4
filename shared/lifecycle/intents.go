package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/gpuaas/app-artifacts/shared/artifact"
)

// GetIntent answers a publish intent of the project, its status as of now.
func (s *Service) GetIntent(ctx context.Context, r *Request, intentID string) (*Result, error) {
	if !r.Can(artifact.PermRead) {
		return nil, forbidden(artifact.PermRead)
	}
	missing := artifact.Errorf(artifact.CodeNotFound, "publish_intent_not_found", "no such publish intent in this project")
	if !artifact.ValidArtifactID(intentID) {
		return nil, missing
	}
	p, proj, err := s.Store.GetIntent(ctx, r.ProjectID, intentID)
	if err != nil {
		return nil, err
	}
	if proj != nil && proj.OrgID != r.OrgID {
		return nil, orgMismatch()
	}
	if p == nil {
		return nil, missing
	}
	view := *p
	view.Status = p.StatusAt(s.now())
	body, err := jsonBody(&view)
	if err != nil {
		return nil, err
	}
	return &Result{Status: http.StatusOK, Body: body}, nil
}

// Push is an image pushed by tag to a platform repository.
type Push struct {
	RepositoryName string // gpuaas/<org>/<project>/<slug>
	Tag            string
	Digest         string
	MediaType      string // as the registry reports it
	EventID        string
}

// Outcomes of RegisterPush.
const (
	PushRegistered        = "registered"
	PushReplayed          = "already_registered_by_this_push"
	PushDigestRegistered  = "digest_already_registered"
	PushNoIntent          = "no_open_intent"
	PushIntentExpired     = "intent_expired"
	PushIntentNotOpen     = "intent_not_open"
	PushRejected          = "rejected"
	pushIdempotencyPrefix = "ecr-push:"
)

// PushResult is what became of a push.
type PushResult struct {
	Outcome    string // one of the Push* outcomes
	ArtifactID string // the artifact registered, or the one already holding the digest
	// Reason is the refusal's details.reason when Outcome is PushRejected
	// (an invalid media type, say), for the log line.
	Reason string
}

// RegisterPush registers a pushed digest against the open publish intent for
// its repository and tag, as the intent's creator, in one transaction with
// the intent's fulfilment and the audit row. The idempotency key derives
// from the push itself, so a duplicated or replayed event registers once.
// Outcomes other than PushRegistered write nothing; an error is transient.
func (s *Service) RegisterPush(ctx context.Context, p Push) (PushResult, error) {
	intents, err := s.Store.IntentsFor(ctx, p.RepositoryName, p.Tag)
	if err != nil {
		return PushResult{}, err
	}
	now := s.now()
	var intent *artifact.PublishIntent
	outcome := PushNoIntent
	for _, it := range intents {
		switch it.StatusAt(now) {
		case artifact.IntentOpen:
			intent = it
		case artifact.IntentExpired:
			outcome = PushIntentExpired
		case artifact.IntentFulfilled:
			if outcome == PushNoIntent {
				outcome = PushIntentNotOpen
			}
		}
		if intent != nil {
			break
		}
	}
	key := pushKey(p)
	if intent == nil {
		// A fulfilled intent may be this very push, delivered again.
		for _, it := range intents {
			if it.Status == artifact.IntentFulfilled {
				intent = it
				break
			}
		}
		if intent == nil {
			return PushResult{Outcome: outcome}, nil
		}
	}
	r := &Request{
		Caller: Caller{
			Principal: intent.CreatedBy, OrgID: intent.OrgID,
			Perms:         map[artifact.Permission]bool{artifact.PermPublish: true},
			CorrelationID: "ecr-push-" + shortHash(p.EventID),
		},
		ProjectID: intent.ProjectID, IdemKey: key, Fingerprint: key,
		Origin: map[string]any{"via": "ecr_push", "event_id": p.EventID, "image_tag": p.Tag},
	}
	repo := s.RegistryHost + "/" + p.RepositoryName
	alg := "sha256"
	res, err := s.Register(ctx, r, &RegisterInput{
		AppSlug: &intent.AppSlug, AppVersion: &intent.AppVersion, Repository: &repo, Digest: &p.Digest,
		DigestAlgorithm: &alg, Kind: (*string)(&intent.Kind), SourceType: (*string)(&intent.SourceType),
		MediaType: &p.MediaType, PublishIntentID: &intent.IntentID,
	})
	if err != nil {
		e := artifact.AsError(err)
		switch {
		case e.Code == artifact.CodeAlreadyExists:
			return PushResult{Outcome: PushDigestRegistered, ArtifactID: detailString(e, "existing_artifact_id")}, nil
		case e.Reason() == "publish_intent_not_open":
			return PushResult{Outcome: PushIntentNotOpen}, nil
		case e.Code == artifact.CodeInvalidRequest || e.Code == artifact.CodeInsufficientPermissions:
			return PushResult{Outcome: PushRejected, Reason: e.Reason()}, nil
		}
		return PushResult{}, err
	}
	if res.Replayed {
		return PushResult{Outcome: PushReplayed, ArtifactID: res.ArtifactID}, nil
	}
	return PushResult{Outcome: PushRegistered, ArtifactID: res.ArtifactID}, nil
}

// pushKey is the idempotency key of a push: the same repository, tag and
// digest are the same push however many events announce it.
func pushKey(p Push) string {
	return pushIdempotencyPrefix + shortHash(p.RepositoryName+"\x00"+p.Tag+"\x00"+p.Digest)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

func detailString(e *artifact.Error, k string) string {
	v, _ := e.Details[k].(string)
	return v
}
