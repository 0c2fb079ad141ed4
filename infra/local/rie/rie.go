package rie

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildFlags are the go build flags of the SAM build (the Makefile's
// LAMBDA_FLAGS); Build adds CGO_ENABLED=0 and the host's GOOS and GOARCH.
var BuildFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w"}

// InvokePath is the emulator's invoke endpoint.
const InvokePath = "/2015-03-31/functions/function/invocations"

// StartTimeout bounds how long Start waits for the emulator to accept
// connections (the caller's context may end it sooner).
const StartTimeout = 10 * time.Second

// BuildError is a failed go build; Output holds the compiler's output.
type BuildError struct {
	Package string // ./functions/<name>
	Output  string
	Err     error
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("rie: go build %s: %v", e.Package, e.Err)
	for _, line := range strings.Split(e.Output, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return msg + ": " + line
		}
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// Build compiles the main package in functionDir into outDir/bootstrap for
// the host's GOOS and GOARCH, with BuildFlags and CGO_ENABLED=0, and returns
// the bootstrap's absolute path. Relative functionDir and outDir are taken
// from repoRoot (functionDir "functions/get-artifact", for instance).
func Build(ctx context.Context, repoRoot, functionDir, outDir string) (string, error) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		return "", fmt.Errorf("rie.Build: %w", err)
	}
	dir := functionDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("rie.Build: %s is not inside the repository %s", functionDir, root)
	}
	pkg := "./" + filepath.ToSlash(rel)
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("rie.Build: %w", err)
	}
	out := filepath.Join(outDir, "bootstrap")
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("rie.Build: the go command is not on PATH: %w", err)
	}
	args := append(append([]string{"build"}, BuildFlags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", &BuildError{Package: pkg, Output: output.String(), Err: err}
	}
	return out, nil
}

// FindRIE returns the emulator the Makefile installs at
// <repoRoot>/bin/aws-lambda-rie, or an error saying how to install it.
func FindRIE(repoRoot string) (string, error) {
	path, err := filepath.Abs(filepath.Join(repoRoot, "bin", "aws-lambda-rie"))
	if err != nil {
		return "", fmt.Errorf("rie.FindRIE: %w", err)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("the Lambda Runtime Interface Emulator is not installed at %s: run `make bin/aws-lambda-rie`", path)
	}
	if err != nil {
		return "", fmt.Errorf("rie.FindRIE: %w", err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file: remove it and run `make bin/aws-lambda-rie`", path)
	}
	return path, nil
}

// Options describe one emulator instance.
type Options struct {
	RIE       string // the aws-lambda-rie executable (see FindRIE)
	Bootstrap string // the function's bootstrap (see Build)
	// Env is the function's environment. The emulator forwards its own
	// environment to the bootstrap, and it gets only Env and PATH, as a
	// Lambda sandbox holds only what the function is configured with; so
	// Env carries AWS_REGION and credentials too.
	Env map[string]string
	// Stdout and Stderr receive the emulator's output and the function's
	// (its log lines); nil discards them.
	Stdout, Stderr io.Writer
}

// Emulator is one running emulator with its function.
type Emulator struct {
	// URL is the invoke endpoint: http://127.0.0.1:PORT + InvokePath.
	URL string
	// Addr and RuntimeAPIAddr are the emulator's two loopback addresses.
	Addr, RuntimeAPIAddr string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the emulator process has exited
	waitErr error         // cmd.Wait's result, set before exited is closed
	stderr  *tail
	client  *http.Client
	sem     chan struct{} // one invoke at a time

	closeOnce sync.Once
	closeErr  error
}

// startAttempts is how often Start picks new ports when the emulator exits
// before accepting connections (another process took a port in between).
const startAttempts = 3

// Start runs the emulator on two free 127.0.0.1 ports with opts.Bootstrap as
// its function and returns once it accepts connections, within StartTimeout.
// The function's init runs on the first Invoke, as on Lambda. Close stops it.
func Start(ctx context.Context, opts Options) (*Emulator, error) {
	if opts.RIE == "" || opts.Bootstrap == "" {
		return nil, errors.New("rie.Start: Options.RIE and Options.Bootstrap are required")
	}
	bootstrap, err := filepath.Abs(opts.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("rie.Start: %w", err)
	}
	if fi, err := os.Stat(bootstrap); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("rie.Start: bootstrap %s is not a file", bootstrap)
	}
	opts.Bootstrap = bootstrap
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	var lastErr error
	for range startAttempts {
		e, err := start(ctx, opts)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if !errors.Is(err, errExitedEarly) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("rie.Start: %w", lastErr)
}

var errExitedEarly = errors.New("the emulator exited before accepting connections")

func start(ctx context.Context, opts Options) (*Emulator, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		Addr:           net.JoinHostPort("127.0.0.1", ports[0]),
		RuntimeAPIAddr: net.JoinHostPort("127.0.0.1", ports[1]),
		exited:         make(chan struct{}),
		sem:            make(chan struct{}, 1),
		client:         &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}},
	}
	e.URL = "http://" + e.Addr + InvokePath
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	e.stderr = &tail{w: stderr}

	// Exactly these arguments: anything more is taken as the bootstrap or
	// its handler.
	e.cmd = exec.Command(opts.RIE,
		"--runtime-interface-emulator-address", e.Addr,
		"--runtime-api-address", e.RuntimeAPIAddr,
		opts.Bootstrap)
	e.cmd.Dir = filepath.Dir(opts.Bootstrap) // the function's /var/task
	e.cmd.Env = environ(opts.Env)
	e.cmd.Stdout, e.cmd.Stderr = stdout, e.stderr
	e.cmd.SysProcAttr = sysProcAttr()
	// The bootstrap inherits the output pipes; do not wait on them forever
	// if it outlives the emulator.
	e.cmd.WaitDelay = 2 * time.Second
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", opts.RIE, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()

	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := d.DialContext(dctx, "tcp", e.Addr)
		dcancel()
		if err == nil {
			c.Close()
			select {
			case <-e.exited: // someone else answered on the port
			default:
				return e, nil
			}
		}
		select {
		case <-e.exited:
			e.Close()
			return nil, fmt.Errorf("%w (%v)%s", errExitedEarly, e.waitErr, e.stderr.lastLine())
		case <-ctx.Done():
			e.Close()
			return nil, fmt.Errorf("the emulator did not accept connections on %s: %w%s", e.Addr, ctx.Err(), e.stderr.lastLine())
		case <-tick.C:
		}
	}
}

// environ is the emulator's environment: PATH and env, sorted for stable
// output.
func environ(env map[string]string) []string {
	out := []string{}
	if _, ok := env["PATH"]; !ok {
		out = append(out, "PATH="+os.Getenv("PATH"))
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		_, p, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, p)
	}
	return ports, nil
}

// FunctionError is an invocation the function failed: its handler returned
// an error or panicked (Type and Message from the runtime's error payload),
// or its runtime exited, during init for instance (Type empty).
type FunctionError struct {
	Status  int    // the emulator's HTTP status: 200 for a returned error
	Type    string // errorType
	Message string // errorMessage, or the emulator's last error line
}

func (e *FunctionError) Error() string {
	if e.Type != "" {
		return fmt.Sprintf("the function failed: %s: %s", e.Type, e.Message)
	}
	msg := fmt.Sprintf("the function failed (emulator status %d)", e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Invoke posts payload to the function and returns its response payload.
// Calls are serialised (one instance cannot take concurrent invokes) and
// bounded by ctx; after an Invoke ended by ctx the instance may still be busy
// with it, so Close it. When the function fails, the error is a
// *FunctionError and the payload, if any, is returned with it.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rie: invoke: %w", ctx.Err())
	}
	defer func() { <-e.sem }()
	select {
	case <-e.exited:
		return nil, errors.New("rie: invoke: the emulator is not running")
	default:
	}
	// An emulator that dies mid-invoke ends the request too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.exited:
			cancel()
		case <-ctx.Done():
		}
	}()

	mark := e.stderr.mark()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("rie: invoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := e.client.Do(req)
	if err != nil {
		select {
		case <-e.exited:
			return nil, fmt.Errorf("rie: invoke: the emulator exited (%v)%s", e.waitErr, e.stderr.lastLine())
		default:
		}
		return nil, fmt.Errorf("rie: invoke: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("rie: invoke: read the response: %w", err)
	}
	var lambdaErr struct {
		Type       *string         `json:"errorType"`
		Message    *string         `json:"errorMessage"`
		StatusCode json.RawMessage `json:"statusCode"`
	}
	isErr := json.Unmarshal(body, &lambdaErr) == nil && lambdaErr.Type != nil && lambdaErr.Message != nil && lambdaErr.StatusCode == nil
	switch {
	case isErr:
		return body, &FunctionError{Status: res.StatusCode, Type: *lambdaErr.Type, Message: *lambdaErr.Message}
	case res.StatusCode != http.StatusOK:
		return body, &FunctionError{Status: res.StatusCode, Message: e.stderr.firstErrorSince(mark)}
	}
	return body, nil
}

// Close stops the emulator and the function's processes: SIGTERM to the
// emulator's process group (the emulator then kills its runtime), SIGKILL
// if it has not exited within 5 s, then SIGKILL to any process it started
// that is still alive. It waits for the emulator to exit.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		defer e.client.CloseIdleConnections()
		pid := e.cmd.Process.Pid
		kids := descendants(pid)
		select {
		case <-e.exited:
		default:
			if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				e.closeErr = fmt.Errorf("rie: stop the emulator: %w", err)
			}
			t := time.NewTimer(5 * time.Second)
			select {
			case <-e.exited:
				t.Stop()
			case <-t.C:
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-e.exited
			}
		}
		killStrays(kids)
	})
	return e.closeErr
}

// tail passes output on and keeps its last lines, for error messages.
type tail struct {
	mu      sync.Mutex
	w       io.Writer
	partial []byte
	lines   []string
	total   int // lines seen so far
}

const tailLines = 64

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.partial[:i]))
		t.total++
		t.partial = t.partial[i+1:]
	}
	if len(t.lines) > tailLines {
		t.lines = append([]string(nil), t.lines[len(t.lines)-tailLines:]...)
	}
	if len(t.partial) > 4096 {
		t.partial = t.partial[len(t.partial)-4096:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *tail) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// lastLine returns ": <the last non-empty line>", or "".
func (t *tail) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(t.lines[i]); l != "" {
			return ": " + l
		}
	}
	return ""
}

// firstErrorSince returns the message of the emulator's first [ERROR] line
// written after mark (the cause; later ones report its consequences), or "".
// Best effort: the line may not have been copied yet.
func (t *tail) firstErrorSince(mark int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := max(len(t.lines)-(t.total-mark), 0); i < len(t.lines); i++ {
		l := t.lines[i]
		if j := strings.Index(l, "[ERROR]"); j >= 0 {
			msg := strings.TrimSpace(l[j+len("[ERROR]"):])
			msg = strings.TrimSpace(strings.TrimPrefix(msg, "(rapid)"))
			msg, _, _ = strings.Cut(msg, " InvokeID=")
			return msg
		}
	}
	return ""
}
