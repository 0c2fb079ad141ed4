// Command local is the project's local cloud: `run` serves the API, its JWT
// authorizer and DynamoDB on 127.0.0.1 from template.yaml; `token` mints a
// token the running API accepts; `invoke` runs one function's real binary
// under the Lambda Runtime Interface Emulator.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"

	"github.com/gpuaas/app-artifacts/infra/local/cloud"
	"github.com/gpuaas/app-artifacts/shared/samtemplate"
)

func main() {
	if err := realMain(); err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

func realMain() error {
	root := &cobra.Command{Use: "local", Short: "the gpuaas app-artifacts local cloud", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(runCommand(), tokenCommand(), invokeCommand(), pushSampleCommand())
	return root.Execute()
}

// paths returns the repository root and the state folder (.local).
func paths() (string, string, error) {
	repo, err := samtemplate.FindRepoRoot()
	if err != nil {
		return "", "", err
	}
	return repo, filepath.Join(repo, ".local"), nil
}

func runCommand() *cobra.Command {
	var apiPort, dynamoPort, eventsPort, registryPort int
	cmd := &cobra.Command{
		Use:   "run",
		Short: "serve the API (with its JWT authorizer) and DynamoDB on 127.0.0.1 until interrupted",
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, state, err := paths()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := cloud.Start(cloud.Options{
				RepoRoot: repo, StateDir: state, Log: os.Stdout,
				APIAddr: fmt.Sprintf("127.0.0.1:%d", apiPort), DynamoAddr: fmt.Sprintf("127.0.0.1:%d", dynamoPort),
				EventsAddr: fmt.Sprintf("127.0.0.1:%d", eventsPort), RegistryAddr: fmt.Sprintf("127.0.0.1:%d", registryPort),
			})
			if err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = st.WaitReady(wctx)
			cancel()
			if err != nil {
				st.Close()
				return err
			}
			fmt.Printf("local cloud ready: api %s  dynamodb %s  eventbridge %s  registry+ecr %s  state %s\n",
				st.APIURL, st.Dynamo.URL, st.EventsURL, st.RegistryURL, state)
			fmt.Printf("mint a token: go run ./infra/local token --sub alice --org org-acme --project-role proj-alpha=admin\n")
			<-ctx.Done()
			fmt.Println("shutting down: saving the table to", filepath.Join(state, cloud.StateFileName))
			return st.Close()
		},
	}
	cmd.Flags().IntVar(&apiPort, "api-port", 3000, "port of the HTTP API")
	cmd.Flags().IntVar(&dynamoPort, "dynamodb-port", 8000, "port of the DynamoDB endpoint")
	cmd.Flags().IntVar(&eventsPort, "events-port", 4010, "port of the EventBridge endpoint")
	cmd.Flags().IntVar(&registryPort, "registry-port", 5000, "port of the OCI registry and its ECR API")
	return cmd
}

func tokenCommand() *cobra.Command {
	var id cloud.Identity
	var projectRoles []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "print a signed JWT that the running local API accepts",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id.Subject == "" || id.Org == "" {
				return errors.New("token: --sub and --org are required")
			}
			for _, pr := range projectRoles {
				project, role, ok := cutRole(pr)
				if !ok {
					return fmt.Errorf("token: --project-role %q is not PROJECT=ROLE", pr)
				}
				id.ProjectRoles = append(id.ProjectRoles, project+":"+role)
			}
			_, state, err := paths()
			if err != nil {
				return err
			}
			key, err := cloud.LoadOrCreateKey(state)
			if err != nil {
				return err
			}
			tok, err := cloud.Mint(key, id, time.Now(), ttl)
			if err != nil {
				return err
			}
			fmt.Println(tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id.Subject, "sub", "", "principal id (sub)")
	f.StringVar(&id.Org, "org", "", "org id (org_id)")
	f.StringArrayVar(&projectRoles, "project-role", nil, "PROJECT=ROLE (viewer, developer, admin); repeatable")
	f.StringArrayVar(&id.PlatformRoles, "platform-role", nil, "platform role (operator, trust_admin); repeatable")
	f.BoolVar(&id.ServiceAccount, "service-account", false, "principal_type service_account instead of user")
	f.DurationVar(&ttl, "ttl", time.Hour, "validity")
	return cmd
}

func cutRole(s string) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '=' {
			return s[:i], s[i+1:], i > 0 && i < len(s)-1
		}
	}
	return "", "", false
}

// pushSampleCommand pushes a small random image, as `docker push` or
// `crane push` would, so a walkthrough needs no image of its own.
func pushSampleCommand() *cobra.Command {
	var registryAddr string
	cmd := &cobra.Command{
		Use:   "push-sample REPOSITORY:TAG",
		Short: "push a small random OCI image to the local registry and print its digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := name.ParseReference(registryAddr+"/"+args[0], name.Insecure)
			if err != nil {
				return err
			}
			img, err := random.Image(1024, 1)
			if err != nil {
				return err
			}
			img = mutate.MediaType(img, types.OCIManifestSchema1)
			img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
			if err := remote.Write(ref, img, remote.WithContext(cmd.Context())); err != nil {
				return fmt.Errorf("push %s: %w", ref, err)
			}
			d, err := img.Digest()
			if err != nil {
				return err
			}
			fmt.Printf("pushed %s@%s (%s)\n", ref.Context(), d, types.OCIManifestSchema1)
			return nil
		},
	}
	cmd.Flags().StringVar(&registryAddr, "registry", cloud.LocalRegistryHost, "registry host:port")
	return cmd
}
