package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/infra/local/rie"
	"github.com/gpuaas/app-artifacts/shared/app"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

// defaultDynamoAddr is where `run` serves DynamoDB, and where invoke starts
// one for the call when nothing answers there.
const defaultDynamoAddr = "127.0.0.1:8000"

// invokeCommand is `invoke --fn LogicalId --event FILE [--dynamodb-url URL]`:
// the local `sam local invoke`. It builds the function's real bootstrap for
// the host, runs it under aws-lambda-rie with its environment from
// template.yaml, posts the event and prints the response on stdout; the
// emulator's and the function's output go to stderr.
func invokeCommand() *cobra.Command {
	var fn, eventFile, dynamoURL string
	cmd := &cobra.Command{
		Use:   "invoke --fn LogicalId --event FILE",
		Short: "run one function's real bootstrap under the Lambda Runtime Interface Emulator with an event",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out, err := invoke(ctx, fn, eventFile, dynamoURL)
			if len(out) > 0 {
				fmt.Println(string(out))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&fn, "fn", "", "the function's logical id in template.yaml (e.g. GetArtifactFunction)")
	f.StringVar(&eventFile, "event", "", "the event to send (e.g. events/get-artifact.json)")
	f.StringVar(&dynamoURL, "dynamodb-url", "", "DynamoDB endpoint (default: http://"+defaultDynamoAddr+" if something answers there, else one started for the call)")
	_ = cmd.MarkFlagRequired("fn")
	_ = cmd.MarkFlagRequired("event")
	return cmd
}

// invoke returns the function's response, indented when it is JSON.
func invoke(ctx context.Context, fn, eventFile, dynamoURL string) ([]byte, error) {
	var rt *app.Function
	var ids []string
	for _, f := range app.Functions() {
		ids = append(ids, f.LogicalID)
		if f.LogicalID == fn {
			rt = &f
		}
	}
	if rt == nil {
		return nil, fmt.Errorf("invoke: no function %q (one of %s)", fn, strings.Join(ids, ", "))
	}
	event, err := os.ReadFile(eventFile)
	if err != nil {
		return nil, fmt.Errorf("invoke: read the event: %w", err)
	}
	if !json.Valid(event) {
		return nil, fmt.Errorf("invoke: %s is not JSON", eventFile)
	}
	repo, err := samtemplate.FindRepoRoot()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(repo, ".local")
	rieBin, err := rie.FindRIE(repo)
	if err != nil {
		return nil, err
	}
	tmpl, err := cloud.LoadTemplate(repo, state, "")
	if err != nil {
		return nil, err
	}
	conf, err := tmpl.Function(fn)
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(os.Stderr, "building functions/%s for %s ...\n", rt.Name, hostPlatform())
	bootstrap, err := rie.Build(ctx, repo, filepath.Join("functions", rt.Name), filepath.Join(state, "build", fn))
	if err != nil {
		var be *rie.BuildError
		if errors.As(err, &be) {
			os.Stderr.WriteString(be.Output)
		}
		return nil, err
	}

	if dynamoURL == "" {
		dynamoURL = "http://" + defaultDynamoAddr
		if !answers(ctx, dynamoURL) {
			ddb, err := cloud.StartDynamo(defaultDynamoAddr, tmpl, cloud.LocalTableName, filepath.Join(state, cloud.StateFileName))
			var le *cloud.ListenError
			if errors.As(err, &le) {
				return nil, fmt.Errorf("invoke: %s is taken but does not answer as DynamoDB: pass --dynamodb-url (%v)", defaultDynamoAddr, le.Err)
			}
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "started DynamoDB on %s for this call (state %s)\n", ddb.URL, filepath.Join(state, cloud.StateFileName))
			dynamoURL = ddb.URL
			defer func() {
				if err := ddb.Save(); err != nil {
					fmt.Fprintln(os.Stderr, "local: save the table:", err)
				}
				ddb.Close()
			}()
		}
	}
	side, err := cloud.StartSidecars(func(u string) bool { return answers(ctx, u) }, cloud.LocalBusName(tmpl))
	if err != nil {
		return nil, err
	}
	defer side.Stop()
	env, err := cloud.FunctionEnv(tmpl, fn, cloud.Endpoints{DynamoDB: dynamoURL, ECR: side.ECR, EventBridge: side.EventBridge})
	if err != nil {
		return nil, err
	}
	// What Lambda tells a function about itself; the emulator reads the
	// timeout too.
	if conf.FunctionName != "" {
		env["AWS_LAMBDA_FUNCTION_NAME"] = conf.FunctionName
	}
	if conf.MemorySize > 0 {
		env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = strconv.Itoa(conf.MemorySize)
	}
	timeout := 10 * time.Second
	if conf.Timeout > 0 {
		env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(conf.Timeout)
		timeout = time.Duration(conf.Timeout) * time.Second
	}

	em, err := rie.Start(ctx, rie.Options{RIE: rieBin, Bootstrap: bootstrap, Env: env, Stdout: os.Stderr, Stderr: os.Stderr})
	if err != nil {
		return nil, err
	}
	defer em.Close()
	// The function's timeout, plus its init and the emulator's own time.
	ictx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	out, err := em.Invoke(ictx, event)
	if cerr := em.Close(); err == nil && cerr != nil {
		err = cerr
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	if err != nil {
		return out, fmt.Errorf("invoke %s: %w", fn, err)
	}
	return out, nil
}

// answers reports whether an HTTP server answers at url (any status).
func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return true
}

func hostPlatform() string { return runtime.GOOS + "/" + runtime.GOARCH }
