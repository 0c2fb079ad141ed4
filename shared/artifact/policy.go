package artifact

import "slices"

// Channel is a promotion target in a project.
type Channel struct {
	Name          string       `json:"name" dynamodbav:"name"`
	Protected     bool         `json:"protected" dynamodbav:"protected"`
	RequiredTrust []TrustState `json:"required_trust" dynamodbav:"required_trust"`
	// SignatureRequired asks the verifier for a trusted signature for
	// artifacts promoted here (per-channel signature policy).
	SignatureRequired bool `json:"signature_required" dynamodbav:"signature_required"`
}

// TrustedKey is a public key whose signatures the project accepts.
type TrustedKey struct {
	KeyID string `json:"key_id" dynamodbav:"key_id"`
	PEM   string `json:"pem" dynamodbav:"pem"`
}

// Policy is a project's artifact policy.
type Policy struct {
	Channels            []Channel    `json:"channels" dynamodbav:"channels"`
	SignatureRequired   bool         `json:"signature_required" dynamodbav:"signature_required"`
	TrustedKeys         []TrustedKey `json:"trusted_keys" dynamodbav:"trusted_keys"`
	AllowedSourceTypes  []SourceType `json:"allowed_source_types" dynamodbav:"allowed_source_types"`
	PullThroughPrefixes []string     `json:"pull_through_prefixes" dynamodbav:"pull_through_prefixes"`
}

// DefaultPolicy is the policy of a project that never set one: dev and
// staging take unverified or verified artifacts, production is protected
// (admins only) and takes verified ones only.
func DefaultPolicy() *Policy {
	open := []TrustState{Unverified, Verified}
	return &Policy{
		Channels: []Channel{
			{Name: "dev", RequiredTrust: open},
			{Name: "staging", RequiredTrust: slices.Clone(open)},
			{Name: "production", Protected: true, RequiredTrust: []TrustState{Verified}},
		},
		TrustedKeys:         []TrustedKey{},
		AllowedSourceTypes:  []SourceType{SourcePlatformPush, SourcePullThroughCache},
		PullThroughPrefixes: []string{},
	}
}

// Channel finds a channel by name. A nil policy knows no channel.
func (p *Policy) Channel(name string) (Channel, bool) {
	if p == nil {
		return Channel{}, false
	}
	for _, c := range p.Channels {
		if c.Name == name {
			return c, true
		}
	}
	return Channel{}, false
}

// AllowsSource reports whether the policy accepts artifacts of source type s.
func (p *Policy) AllowsSource(s SourceType) bool {
	return slices.Contains(p.AllowedSourceTypes, s)
}
