package cloud

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Local names. The template is evaluated with these parameters, so what
// differs from AWS is only what the template makes a parameter.
const (
	LocalStage        = "local"
	LocalTableName    = "gpuaas-app-artifacts-local"
	LocalRegistryHost = "127.0.0.1:5000"
	StateFileName     = "dynamodb.json"
	cursorSecretFile  = "cursor-secret"
)

// LocalParams are the template parameters of the local cloud; registryHost
// is where the local registry answers ("" for LocalRegistryHost).
func LocalParams(cursorSecret, registryHost string) map[string]string {
	if registryHost == "" {
		registryHost = LocalRegistryHost
	}
	return map[string]string{
		"Stage": LocalStage, "JwtIssuer": LocalIssuer, "JwtAudience": LocalAudience,
		"CursorSecret": cursorSecret, "RegistryHost": registryHost,
	}
}

// LoadOrCreateCursorSecret keeps the local cursor secret in dir, so cursors
// survive a restart like the data does.
func LoadOrCreateCursorSecret(dir string) (string, error) {
	path := filepath.Join(dir, cursorSecretFile)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cloud.LoadOrCreateCursorSecret: %w", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(buf)), 0o600); err != nil {
		return "", err
	}
	return hex.EncodeToString(buf), nil
}
