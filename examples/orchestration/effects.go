package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Effects is where steps make their side effects: a stand-in for the
// services a real process calls (a payment provider, a mail service),
// which take an idempotency key with each request and answer a repeated
// key with their first answer instead of acting again.
//
// Each effect is a file, effects/<key>, holding the step's answer, made
// at most once: written to a temporary file, fsynced, and linked into
// place, which fails if the key exists. The log executions.log gets a
// line "exec <key> <step>" for every execution, repeated or not, and
// "effect <key> <step>" after each effect made, so a test can count both.
type Effects struct {
	dir string
}

// OpenEffects returns the effects under dir, creating it.
func OpenEffects(dir string) (*Effects, error) {
	if err := os.MkdirAll(filepath.Join(dir, "effects"), 0o755); err != nil {
		return nil, fmt.Errorf("orchestration: effects: %w", err)
	}
	return &Effects{dir: dir}, nil
}

// effect is the answer kept under an idempotency key.
type effect struct {
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Do executes step under key: it logs the execution, and returns the
// answer kept under key if there is one, or runs exec and keeps its
// answer. err is the store's own failure.
func (e *Effects) Do(key, step string, exec func() (json.RawMessage, string)) (out json.RawMessage, stepErr string, err error) {
	if err := e.log("exec", key, step); err != nil {
		return nil, "", err
	}
	path := filepath.Join(e.dir, "effects", fileName(key))
	if b, err := os.ReadFile(path); err == nil {
		var ef effect
		if err := json.Unmarshal(b, &ef); err != nil {
			return nil, "", fmt.Errorf("orchestration: effect %s: %w", key, err)
		}
		return ef.Output, ef.Error, nil // a repeated key: the first answer
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("orchestration: effect %s: %w", key, err)
	}
	var ef effect
	ef.Output, ef.Error = exec()
	b, err := json.Marshal(ef)
	if err != nil {
		return nil, "", err
	}
	made, err := createOnce(path, b)
	if err != nil {
		return nil, "", fmt.Errorf("orchestration: effect %s: %w", key, err)
	}
	if !made {
		// Made meanwhile by another runner: its answer is the answer.
		out, stepErr, _, err := e.Effect(key)
		return out, stepErr, err
	}
	if err := e.log("effect", key, step); err != nil {
		return nil, "", err
	}
	return ef.Output, ef.Error, nil
}

// Effect returns the answer kept under key, and whether there is one.
func (e *Effects) Effect(key string) (json.RawMessage, string, bool, error) {
	b, err := os.ReadFile(filepath.Join(e.dir, "effects", fileName(key)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, err
	}
	var ef effect
	if err := json.Unmarshal(b, &ef); err != nil {
		return nil, "", false, fmt.Errorf("orchestration: effect %s: %w", key, err)
	}
	return ef.Output, ef.Error, true, nil
}

// Executions returns how many times each key was executed, and how many
// times its effect was made.
func (e *Effects) Executions() (execs, made map[string]int, err error) {
	b, err := os.ReadFile(filepath.Join(e.dir, "executions.log"))
	execs, made = make(map[string]int), make(map[string]int)
	if errors.Is(err, os.ErrNotExist) {
		return execs, made, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 3 && f[0] == "exec":
			execs[f[1]]++
		case len(f) == 3 && f[0] == "effect":
			made[f[1]]++
		default:
			return nil, nil, fmt.Errorf("orchestration: execution log line %q", line)
		}
	}
	return execs, made, nil
}

// log appends one line to executions.log, in one write.
func (e *Effects) log(what, key, step string) error {
	f, err := os.OpenFile(filepath.Join(e.dir, "executions.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("orchestration: execution log: %w", err)
	}
	_, err = f.WriteString(what + " " + key + " " + step + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("orchestration: execution log: %w", err)
	}
	return nil
}

// fileName maps a key (instance/step) to a file name.
func fileName(key string) string { return strings.ReplaceAll(key, "/", ".") }

// createOnce makes a file at path holding b, unless one is there: it
// writes a temporary file, fsyncs it and links it to path, which fails if
// path exists. made reports whether this call created it.
func createOnce(path string, b []byte) (made bool, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	err = os.Link(tmp, path)
	os.Remove(tmp)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return false, err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err == nil, err
}
