// Command demo runs slimgate for real on this machine: a kube-apiserver
// and etcd (envtest), an in-process registry holding sample images whose
// configs are those of real official images, the webhook with the built-in
// default policy, and sample workloads in three namespaces. It prints what
// a person would want to read: a table of verdicts, the rejections as
// kubectl prints them, the Events, the background scan's policy status
// and Reports, the warnings a dry-run label or switch to Enforce returns,
// and `slimgate scan` (the command, built from this repository) against
// the same cluster. It exits non-zero when anything turns out other than
// expected, so it doubles as a smoke test.
//
//	make demo                  # or: go run ./hack/demo [-short] [-v]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// opts configure a run.
type opts struct {
	// short applies only the Go pair (for CI).
	short bool
	// verbose shows the webhook's logs on stderr.
	verbose bool
	// root is the repository root; empty: found from the working directory.
	root string
	// assets is the folder holding kube-apiserver and etcd; empty:
	// KUBEBUILDER_ASSETS, else hack/envtest-assets.sh builds or finds them.
	assets string
}

func main() {
	var o opts
	flag.BoolVar(&o.short, "short", false, "apply only the Go samples (a quicker smoke test)")
	flag.BoolVar(&o.verbose, "v", false, "show the webhook's logs on stderr")
	flag.Parse()
	o.assets = os.Getenv("KUBEBUILDER_ASSETS")
	if o.verbose {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	} else {
		logf.SetLogger(logr.Discard())
	}
	// Ctrl-C or SIGTERM cancels the run, which then stops what it started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, o)
	stop()
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "demo: interrupted; what it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run is the whole demo; it returns an error when setup failed or any
// outcome differed from what slimgate should do.
func run(ctx context.Context, out io.Writer, o opts) (err error) {
	start := time.Now()
	if o.root == "" {
		if o.root, err = repoRoot(); err != nil {
			return err
		}
	}
	c := &cluster{}
	defer c.stop()
	// slimgate scan runs near the end: its build overlaps the setup.
	if err := c.startCLIBuild(o.root); err != nil {
		return err
	}

	fmt.Fprintln(out, "slimgate demo: the webhook and its default policy against a real kube-apiserver, all on this machine.")
	section(out, "Registry")
	c.startRegistry()
	var images []*built
	for _, s := range samples() {
		if o.short && s.repo != "demo/go-api" {
			continue
		}
		b, err := build(o.root, c.host(), s)
		if err != nil {
			return err
		}
		if err := b.push(); err != nil {
			return err
		}
		images = append(images, b)
	}
	printImages(out, c.host(), images)

	section(out, "Control plane")
	fmt.Fprintln(out, "Starting kube-apiserver and etcd (envtest, with config/crd and config/webhook) and the webhook (cmd/webhook/app, in this process)...")
	t := time.Now()
	if err := c.startControlPlane(ctx, o); err != nil {
		return err
	}
	fmt.Fprintf(out, "Ready in %s.\n", time.Since(t).Round(100*time.Millisecond))
	if err := c.namespaces(ctx); err != nil {
		return err
	}
	ps := policies(c.host())
	if err := c.install(ctx, ps); err != nil {
		return err
	}
	printSetup(out, c.host())

	results, err := apply(ctx, c, workloads(images))
	if err != nil {
		return err
	}
	evs, err := waitEvents(ctx, c, results)
	if err != nil {
		return err
	}
	section(out, "Verdicts")
	printTable(out, results)
	section(out, "Rejections, as kubectl prints them")
	printRejections(out, results)
	section(out, "Events (kubectl get events -A, demo namespaces)")
	printEvents(out, evs, time.Now())

	scan, err := waitScan(ctx, c, results)
	if err != nil {
		return err
	}
	section(out, "Background scan: policy status and Reports")
	printScan(out, scan)

	pv, err := preview(ctx, c, results)
	if err != nil {
		return err
	}
	section(out, "Preview before enforcing (server-side dry run)")
	printPreviews(out, pv)

	cli, err := runScanCLI(ctx, c)
	if err != nil {
		return err
	}
	section(out, "slimgate scan (the CLI, against this cluster)")
	printCLI(out, cli)

	problems := append(check(results, evs), checkScan(results, scan)...)
	problems = append(problems, checkPreviews(pv)...)
	problems = append(problems, checkCLI(results, cli)...)
	section(out, "Summary")
	fmt.Fprintf(out, "%d workloads: %d refused, %d admitted; %d Events. Finished in %s.\n",
		len(results), count(results, true), count(results, false), len(evs), time.Since(start).Round(100*time.Millisecond))
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(out, "UNEXPECTED:", p)
		}
		return fmt.Errorf("%d unexpected outcomes", len(problems))
	}
	fmt.Fprintln(out, "Every outcome was the expected one.")
	return ctx.Err()
}

// repoRoot walks up from the working directory to the folder holding
// go.mod and the config/ manifests.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "config", "webhook")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from inside the slimgate repository (no go.mod with config/webhook found above the working directory)")
		}
		dir = parent
	}
}
