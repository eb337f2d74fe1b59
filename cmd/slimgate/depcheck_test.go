package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// scanPackage is the one package of the CLI that may reach a cluster.
const scanPackage = "slimgate.dev/slimgate/cmd/slimgate/internal/scan"

// TestCheckDependencies keeps the Kubernetes client libraries out of
// "slimgate check": it reads a cluster never, and client-go alone is most
// of a binary's size. Everything the CLI reaches other than through the
// scan package is the check path.
func TestCheckDependencies(t *testing.T) {
	forbidden := []string{
		"k8s.io/client-go",
		"k8s.io/api",
		"sigs.k8s.io/controller-runtime",
		"github.com/google/go-containerregistry/pkg/authn/kubernetes",
		"slimgate.dev/slimgate/pkg/cloudauth",
		"github.com/aws/aws-sdk-go-v2",
		"github.com/Azure/azure-sdk-for-go",
		"golang.org/x/oauth2/google",
	}
	graph := cliGraph(t)
	if _, ok := graph["slimgate.dev/slimgate/pkg/registry"]; !ok {
		t.Fatalf("go list did not list pkg/registry among the CLI's %d packages: is this the CLI?", len(graph))
	}
	if !slices.Contains(graph["slimgate.dev/slimgate/cmd/slimgate"], scanPackage) {
		t.Fatalf("the CLI does not import %s: update the test", scanPackage)
	}
	for _, edge := range forbiddenImports(graph, "slimgate.dev/slimgate/cmd/slimgate", []string{scanPackage}, forbidden) {
		t.Errorf("slimgate check links a forbidden package: %s", edge)
	}
}

// TestCLIBinary keeps the heaviest Kubernetes libraries out of the CLI's
// binary, scan included: the typed clientset and informers,
// controller-runtime's manager, cache and webhook server, and the cloud
// SDKs. It reads the symbols the linker kept, because the scan's client
// imports packages (leader election's metrics) that import the
// clientset, whose code the linker then drops.
func TestCLIBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the CLI: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "slimgate")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(goBin, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	var symbols []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 3 {
			symbols = append(symbols, f[len(f)-1])
		}
	}
	if !slices.ContainsFunc(symbols, func(s string) bool { return strings.HasPrefix(s, scanPackage+".") }) {
		t.Fatalf("no symbol of %s among the binary's %d: is this the CLI?", scanPackage, len(symbols))
	}
	packages := []string{
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/kubernetes/typed/",
		"k8s.io/client-go/informers",
		"sigs.k8s.io/controller-runtime/pkg/manager",
		"sigs.k8s.io/controller-runtime/pkg/cache",
		"sigs.k8s.io/controller-runtime/pkg/webhook",
		"github.com/aws/",
		"github.com/Azure/",
		"golang.org/x/oauth2/google",
		"slimgate.dev/slimgate/pkg/cloudauth",
		"cloud.google.com/",
		"google.golang.org/api/",
	}
	for _, pkg := range linkedPackages(symbols, packages) {
		t.Errorf("the CLI's binary holds code of %s", pkg)
	}
}

// cliGraph lists the CLI's dependencies: each package and its imports.
func cliGraph(t *testing.T) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the CLI's dependencies: %v", err)
	}
	// The test runs in the package's folder: "." is the CLI.
	out, err := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		if fields := strings.Fields(line); len(fields) > 0 {
			graph[fields[0]] = fields[1:]
		}
	}
	return graph
}

// forbiddenImports returns the imports by which the packages reachable
// from root, without passing through an excluded package, enter a
// forbidden tree: "importer -> package" for each package at or below a
// forbidden path that such a package outside every forbidden tree
// imports. The edges inside a forbidden tree are left out, so each entry
// point is said once.
func forbiddenImports(graph map[string][]string, root string, excluded, forbidden []string) []string {
	isForbidden := func(pkg string) bool {
		return slices.ContainsFunc(forbidden, func(f string) bool {
			return pkg == f || strings.HasPrefix(pkg, f+"/")
		})
	}
	var edges []string
	seen := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		for _, imp := range graph[pkg] {
			switch {
			case slices.Contains(excluded, imp):
			case isForbidden(imp):
				edges = append(edges, pkg+" -> "+imp)
			case !seen[imp]:
				seen[imp] = true
				queue = append(queue, imp)
			}
		}
	}
	slices.Sort(edges)
	return slices.Compact(edges)
}

// linkedPackages returns the packages that symbols hold code of: a
// package ending in "/" names a tree, any other that package alone.
func linkedPackages(symbols, packages []string) []string {
	var out []string
	for _, pkg := range packages {
		found := slices.ContainsFunc(symbols, func(s string) bool {
			if strings.HasSuffix(pkg, "/") {
				return strings.Contains(s, pkg)
			}
			return strings.Contains(s, pkg+".")
		})
		if found {
			out = append(out, pkg)
		}
	}
	return out
}

func TestForbiddenImports(t *testing.T) {
	graph := map[string][]string{
		"example.com/cli":             {"example.com/cli/check", "example.com/cli/scan", "k8s.io/apimachinery/pkg/util/sets"},
		"example.com/cli/check":       {"example.com/keychain", "k8s.io/api/core/v1", "k8s.io/api", "example.com/shared"},
		"example.com/cli/scan":        {"example.com/shared", "sigs.k8s.io/controller-runtime/pkg/client"},
		"example.com/shared":          {"k8s.io/apimachinery/pkg/util/sets"},
		"example.com/keychain":        {"k8s.io/client-go/kubernetes"},
		"k8s.io/client-go/kubernetes": {"k8s.io/api/core/v1", "k8s.io/client-go/rest"},
		"k8s.io/api/core/v1":          {"k8s.io/apimachinery/pkg/runtime"},
	}
	forbidden := []string{"k8s.io/client-go", "k8s.io/api", "sigs.k8s.io/controller-runtime"}
	got := forbiddenImports(graph, "example.com/cli", []string{"example.com/cli/scan"}, forbidden)
	want := []string{
		"example.com/cli/check -> k8s.io/api",
		"example.com/cli/check -> k8s.io/api/core/v1",
		"example.com/keychain -> k8s.io/client-go/kubernetes",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forbidden imports without scan (-want +got):\n%s", diff)
	}
	got = forbiddenImports(graph, "example.com/cli", nil, forbidden)
	want = append(want, "example.com/cli/scan -> sigs.k8s.io/controller-runtime/pkg/client")
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forbidden imports with scan (-want +got):\n%s", diff)
	}
	if got := forbiddenImports(graph, "example.com/cli/scan", nil, []string{"k8s.io/client-go"}); len(got) != 0 {
		t.Errorf("scan reaches no client-go, got %q", got)
	}
}

func TestLinkedPackages(t *testing.T) {
	symbols := []string{
		"k8s.io/client-go/kubernetes/scheme.init",
		"sigs.k8s.io/controller-runtime/pkg/webhook/admission.Allowed",
		"go:itab.*k8s.io/api/core/v1.Pod,sigs.k8s.io/controller-runtime/pkg/cache/cacheapi.Object",
		"type:*github.com/aws/aws-sdk-go-v2/aws.Config",
	}
	packages := []string{"k8s.io/client-go/kubernetes", "sigs.k8s.io/controller-runtime/pkg/webhook",
		"sigs.k8s.io/controller-runtime/pkg/cache", "github.com/aws/", "cloud.google.com/"}
	if diff := cmp.Diff([]string{"github.com/aws/"}, linkedPackages(symbols, packages)); diff != "" {
		t.Errorf("linked packages (-want +got):\n%s", diff)
	}
	symbols = append(symbols, "k8s.io/client-go/kubernetes.NewForConfig", "sigs.k8s.io/controller-runtime/pkg/webhook.(*DefaultServer).Start")
	want := []string{"k8s.io/client-go/kubernetes", "sigs.k8s.io/controller-runtime/pkg/webhook", "github.com/aws/"}
	if diff := cmp.Diff(want, linkedPackages(symbols, packages)); diff != "" {
		t.Errorf("linked packages (-want +got):\n%s", diff)
	}
}
