package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

// cliBuild is `go build ./cmd/slimgate`, run in the background while the
// control plane starts.
type cliBuild struct {
	done   chan struct{}
	cancel context.CancelFunc
	path   string
	err    error
}

// startCLIBuild builds the slimgate command of the repository at root
// into dir. The go command is $GO, else go on the PATH.
func startCLIBuild(root, dir string) *cliBuild {
	ctx, cancel := context.WithCancel(context.Background())
	b := &cliBuild{done: make(chan struct{}), cancel: cancel, path: filepath.Join(dir, "slimgate")}
	go func() {
		defer close(b.done)
		cmd := exec.CommandContext(ctx, cmp.Or(os.Getenv("GO"), "go"), "build", "-buildvcs=false", "-o", b.path, "./cmd/slimgate") //nolint:gosec // G204: the go command the caller chose
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building cmd/slimgate: %w\n%s", err, out)
		}
	}()
	return b
}

// wait returns the binary once it is built.
func (b *cliBuild) wait(ctx context.Context) (string, error) {
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-b.done:
		return b.path, b.err
	}
}

// stop ends the build, if it still runs, and waits for it.
func (b *cliBuild) stop() {
	b.cancel()
	<-b.done
}

// cliRun is one run of the slimgate command.
type cliRun struct {
	// args are its arguments; it runs in the folder of the files they name.
	args           []string
	stdout, stderr string
	exit           int
}

// runScanCLI runs `slimgate scan -A` against the demo cluster, as an
// administrator, under the built-in policy (with the demo registry's
// settings): what a platform team runs before installing anything.
func runScanCLI(ctx context.Context, c *cluster) (*cliRun, error) {
	admin, err := c.env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the demo's kubeconfig user: %w", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("the demo's kubeconfig: %w", err)
	}
	kubeconfig := filepath.Join(c.dir, "demo.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	doc, err := scanPolicy(c.host())
	if err != nil {
		return nil, err
	}
	policyFile := filepath.Join(c.dir, "default-policy.yaml")
	if err := os.WriteFile(policyFile, doc, 0o600); err != nil {
		return nil, err
	}
	bin, err := c.cli.wait(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	run := &cliRun{args: []string{"scan", "--kubeconfig", filepath.Base(kubeconfig), "-A", "--policy", filepath.Base(policyFile)}}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, run.args...) //nolint:gosec // G204: the binary just built
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, &stdout, &stderr
	// An exit status other than 0 is an answer; only a command that did
	// not run to its end is an error.
	if err := cmd.Run(); err != nil && (cmd.ProcessState == nil || cmd.ProcessState.ExitCode() < 0) {
		return nil, fmt.Errorf("running slimgate scan: %w", err)
	}
	run.exit = cmd.ProcessState.ExitCode()
	run.stdout, run.stderr = stdout.String(), stderr.String()
	return run, nil
}

// scanPolicy is the policy file the demo's `slimgate scan` reads: the
// built-in policy (what it judges by without --policy), told that the
// demo registry speaks plain HTTP on loopback.
func scanPolicy(registryHost string) ([]byte, error) {
	p := policy.Default()
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), policy.Kind
	p.Spec.Registries.Insecure = []string{registryHost}
	p.Spec.Registries.AllowPrivateNetworks = true
	return yaml.Marshal(p)
}
