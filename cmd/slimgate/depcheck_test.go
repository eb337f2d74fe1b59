package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCLIDependencies keeps the Kubernetes client libraries out of the
// CLI: it reads a cluster never, and client-go alone is most of a binary's
// size. Pull-secret credentials live in pkg/pullsecret for the webhook,
// and so do the cloud SDKs of pkg/cloudauth: the CLI reads the Docker
// configuration and its credential helpers instead.
func TestCLIDependencies(t *testing.T) {
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
	if _, ok := graph["slimgate.dev/slimgate/pkg/registry"]; !ok {
		t.Fatalf("go list did not list pkg/registry among the CLI's %d packages: is this the CLI?", len(graph))
	}
	for _, edge := range forbiddenImports(graph, forbidden) {
		t.Errorf("the CLI links a forbidden package: %s", edge)
	}
}

// forbiddenImports returns the imports by which a dependency graph (each
// package and its imports) enters a forbidden tree: "importer -> package"
// for each package at or below a forbidden path that a package outside
// every forbidden tree imports. The edges inside a forbidden tree are
// left out, so each entry point is said once.
func forbiddenImports(graph map[string][]string, forbidden []string) []string {
	isForbidden := func(pkg string) bool {
		return slices.ContainsFunc(forbidden, func(f string) bool {
			return pkg == f || strings.HasPrefix(pkg, f+"/")
		})
	}
	var edges []string
	for pkg, imports := range graph {
		if isForbidden(pkg) {
			continue
		}
		for _, imp := range imports {
			if isForbidden(imp) {
				edges = append(edges, pkg+" -> "+imp)
			}
		}
	}
	slices.Sort(edges)
	return edges
}

func TestForbiddenImports(t *testing.T) {
	graph := map[string][]string{
		"example.com/cli":             {"example.com/cli/check", "k8s.io/apimachinery/pkg/util/sets", "k8s.io/apiserver/pkg/x"},
		"example.com/cli/check":       {"example.com/keychain", "k8s.io/api/core/v1", "k8s.io/api"},
		"example.com/keychain":        {"k8s.io/client-go/kubernetes"},
		"k8s.io/client-go/kubernetes": {"k8s.io/api/core/v1", "k8s.io/client-go/rest"},
		"k8s.io/api/core/v1":          {"k8s.io/apimachinery/pkg/runtime"},
	}
	got := forbiddenImports(graph, []string{"k8s.io/client-go", "k8s.io/api"})
	want := []string{
		"example.com/cli/check -> k8s.io/api",
		"example.com/cli/check -> k8s.io/api/core/v1",
		"example.com/keychain -> k8s.io/client-go/kubernetes",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forbidden imports (-want +got):\n%s", diff)
	}
	if got := forbiddenImports(graph, []string{"sigs.k8s.io/controller-runtime"}); len(got) != 0 {
		t.Errorf("nothing forbidden is imported, got %q", got)
	}
}
