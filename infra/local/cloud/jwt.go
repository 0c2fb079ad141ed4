package cloud

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The local identity provider. The API's authorizer takes its issuer and
// audience from the template's parameters, which the local cloud sets to these.
const (
	LocalIssuer   = "https://auth.gpuaas.local/"
	LocalAudience = "gpuaas-api-local"
	keyFile       = "jwt-signing-key.pem"
	keyID         = "gpuaas-local-1"
)

// LoadOrCreateKey returns the local signing key from dir, creating it on first use.
func LoadOrCreateKey(dir string) (*rsa.PrivateKey, error) {
	path := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("cloud.LoadOrCreateKey: %s is not PEM", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cloud.LoadOrCreateKey: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("cloud.LoadOrCreateKey: %s is not an RSA key", path)
		}
		return rk, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cloud.LoadOrCreateKey: %w", err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	// Two processes racing to create the key: the first rename wins, and
	// both then use the file on disk.
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	os.Remove(tmp)
	return LoadOrCreateKey(dir)
}

// Identity is what a minted token says about its bearer (SPEC section 4).
type Identity struct {
	Subject        string
	Org            string
	ProjectRoles   []string // PROJECT:ROLE
	PlatformRoles  []string
	ServiceAccount bool
}

// Mint signs a token for id, valid for ttl from now.
func Mint(key *rsa.PrivateKey, id Identity, now time.Time, ttl time.Duration) (string, error) {
	pt := "user"
	if id.ServiceAccount {
		pt = "service_account"
	}
	claims := jwt.MapClaims{
		"iss": LocalIssuer, "aud": LocalAudience, "sub": id.Subject, "org_id": id.Org, "principal_type": pt,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
		"project_roles": strings.Join(id.ProjectRoles, " "),
	}
	if len(id.PlatformRoles) > 0 {
		claims["platform_roles"] = strings.Join(id.PlatformRoles, " ")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = keyID
	return t.SignedString(key)
}

// ErrUnauthorized is every reason a token is refused; API Gateway says no more.
var ErrUnauthorized = errors.New("unauthorized")

// Authorizer checks bearer tokens as API Gateway's HTTP API JWT authorizer
// does: RS256 signature, issuer, one of the audiences, exp and nbf.
type Authorizer struct {
	Key       *rsa.PublicKey
	Issuer    string
	Audiences []string
	Now       func() time.Time
}

// Claims verifies the Authorization header value and returns the claims as
// the authorizer hands them to a function: every value a string.
func (a *Authorizer) Claims(authorization string) (map[string]string, error) {
	raw, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		raw, ok = strings.CutPrefix(authorization, "bearer ")
	}
	if !ok || raw == "" {
		return nil, ErrUnauthorized
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	parsed, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return a.Key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(a.Issuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now), jwt.WithLeeway(0))
	if err != nil || !parsed.Valid {
		return nil, ErrUnauthorized
	}
	mc, _ := parsed.Claims.(jwt.MapClaims)
	auds, _ := mc.GetAudience()
	match := false
	for _, got := range auds {
		for _, want := range a.Audiences {
			match = match || got == want
		}
	}
	if !match {
		return nil, ErrUnauthorized
	}
	out := map[string]string{}
	for k, v := range mc {
		out[k] = claimString(v)
	}
	return out, nil
}

// claimString flattens a claim the way API Gateway does for payload 2.0:
// numbers as integers, arrays as "[a b]".
func claimString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = claimString(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// MintClaims signs the claims of a valid local token after edit changes
// them: for tests of what the authorizer refuses.
func MintClaims(key *rsa.PrivateKey, edit func(map[string]any)) (string, error) {
	now := time.Now()
	c := map[string]any{"iss": LocalIssuer, "aud": LocalAudience, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	edit(c)
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(c))
	t.Header["kid"] = keyID
	return t.SignedString(key)
}
