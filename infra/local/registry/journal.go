package registry

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// journalEntry is one change the registry keeps: a CreateRepository request
// body, a manifest written (by tag or digest) with its bytes, or a manifest
// deleted.
type journalEntry struct {
	Op        string    `json:"op"` // create, put, delete
	Repo      string    `json:"repo"`
	Ref       string    `json:"ref,omitempty"`
	MediaType string    `json:"media_type,omitempty"`
	Body      []byte    `json:"body,omitempty"`
	At        time.Time `json:"at"`
}

// journal appends entries, one JSON line each, and syncs every write: a
// local registry is small, and a line half written by a crash is skipped
// on the next start.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, []journalEntry, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, err
	}
	var entries []journalEntry
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			var e journalEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Op != "" {
				entries = append(entries, e)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return &journal{f: f}, entries, nil
}

func (j *journal) append(e journalEntry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err == nil {
		_ = j.f.Sync()
	}
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}
