package scan

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/admission"
	"slimgate.dev/slimgate/pkg/fleet"
	"slimgate.dev/slimgate/pkg/registry"
)

// Exit statuses.
const (
	// ExitClean: no workload is in violation.
	ExitClean = 0
	// ExitViolation: at least one workload is in violation.
	ExitViolation = 1
	// ExitError: usage errors, the cluster could not be read, or an image
	// could not be inspected.
	ExitError = 2
)

// options is everything "slimgate scan" is configured with.
type options struct {
	kubeconfig      string
	context         string
	namespace       string
	allNamespaces   bool
	policyFile      string
	clusterPolicies bool
	output          string
}

const usage = `usage: slimgate scan [--kubeconfig FILE] [--context NAME] [-n NS | -A]
                     [--policy FILE | --cluster-policies] [--output table|json]

Judges the workloads running in a cluster as the admission webhook would
judge their creation: the images their Pods run (the digest each Pod
reports, else the reference the spec names), under the built-in policy,
a policy file, or the cluster's SlimImagePolicies. It reads the cluster
with your kubeconfig, and the registries with the pull secrets of each
namespace when you may read them, anonymously otherwise.

Without -n or -A it scans the namespace of the kubeconfig's context. -A
leaves out kube-system, kube-public and kube-node-lease, which the
webhook never reviews (name one with -n to scan it).

Exit status: 0 nothing in violation, 1 a workload in violation, 2 usage
errors, the cluster unreadable, or an image not inspected.

flags:
`

// parse parses the arguments of "slimgate scan".
func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("slimgate scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig `file` (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context `name` (default: the current context)")
	for _, n := range []string{"n", "namespace"} {
		fs.StringVar(&o.namespace, n, "", "scan this `namespace` (default: the context's namespace)")
	}
	for _, n := range []string{"A", "all-namespaces"} {
		fs.BoolVar(&o.allNamespaces, n, false, "scan every namespace but the system ones")
	}
	fs.StringVar(&o.policyFile, "policy", "", "SlimImagePolicy YAML or JSON `file` (default: the built-in policy)")
	fs.BoolVar(&o.clusterPolicies, "cluster-policies", false, "judge under the cluster's SlimImagePolicies instead")
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.namespace != "" && o.allNamespaces:
		return o, errors.New("-n and -A exclude each other")
	case o.policyFile != "" && o.clusterPolicies:
		return o, errors.New("--policy and --cluster-policies exclude each other")
	case o.output != "table" && o.output != "json":
		return o, fmt.Errorf("--output %q: want table or json", o.output)
	}
	return o, nil
}

// Run is the command: it returns the exit status. A progress line goes to
// stderr when it is a terminal and the scan takes more than a second.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitClean
	}
	if err != nil {
		fmt.Fprintf(stderr, "slimgate scan: %v\n%s", err, `run "slimgate scan -h" for usage`+"\n")
		return ExitError
	}
	// The engine logs through controller-runtime's logger: the CLI speaks
	// through its report only.
	ctx = logf.IntoContext(ctx, logr.Discard())
	var bar *progress
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar = newProgress(stderr, time.Now)
	}
	rep, err := scan(ctx, o, bar)
	bar.clear()
	if err != nil {
		fmt.Fprintf(stderr, "slimgate scan: %v\n", err)
		return ExitError
	}
	if err := rep.write(stdout, o.output); err != nil {
		fmt.Fprintf(stderr, "slimgate scan: writing the report: %v\n", err)
		return ExitError
	}
	switch {
	case rep.Totals.Errors > 0:
		return ExitError
	case rep.Totals.InViolation > 0:
		return ExitViolation
	}
	return ExitClean
}

// scan reads the cluster and judges its workloads.
func scan(ctx context.Context, o options, bar *progress) (*report, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig, Precedence: defaultKubeconfigs()},
		&clientcmd.ConfigOverrides{CurrentContext: o.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	var names []string
	switch {
	case o.allNamespaces:
	case o.namespace != "":
		names = []string{o.namespace}
	default:
		ns, _, err := cc.Namespace()
		if err != nil {
			return nil, fmt.Errorf("finding the context's namespace: %w", err)
		}
		names = []string{ns}
	}
	snap, err := read(ctx, c, names, o)
	if err != nil {
		return nil, err
	}
	creds, err := credentialsFor(ctx, c, snap.namespaceNames())
	if err != nil {
		return nil, err
	}
	inspector, err := registry.NewRemote(registry.Options{})
	if err != nil {
		return nil, fmt.Errorf("setting up the registry client: %w", err)
	}
	h, err := admission.NewHandler(admission.Options{Reader: snap, Inspector: inspector, Keychain: creds.keychain})
	if err != nil {
		return nil, err
	}
	s := fleet.Scanner{Lister: fleet.ReaderLister{Reader: c}, Judge: h}
	if bar != nil {
		s.Progress = bar.update
	}
	scanned, err := s.Scan(ctx, snap.namespaceNames())
	if err != nil {
		return nil, err
	}
	return newReport(snap, creds, scanned), nil
}

// defaultKubeconfigs is where kubectl looks for kubeconfigs: $KUBECONFIG's
// files, else ~/.kube/config.
func defaultKubeconfigs() []string {
	return clientcmd.NewDefaultClientConfigLoadingRules().Precedence
}

// newClient returns a client of the API server that knows the built-in
// types and slimgate's, with kubectl's request rate.
func newClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 300
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return c, nil
}

// isSystem reports whether ns is a namespace the webhook never reviews,
// which -A leaves out.
func isSystem(ns string) bool {
	switch ns {
	case "kube-system", "kube-public", "kube-node-lease":
		return true
	}
	return false
}
