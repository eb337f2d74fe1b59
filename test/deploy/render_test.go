package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// includeCRDs, among helmTemplate's values, renders crds/ too.
const includeCRDs = "--include-crds"

// helmTemplate renders the chart as release "slimgate" in the release
// namespace, with --set values.
func helmTemplate(set ...string) ([]byte, error) {
	return run(s.helm, chartArgs([]string{"template", "slimgate"}, set)...)
}

// helmLint lints the chart strictly, with --set values, for the release
// namespace and the API server's version as helmTemplate renders it.
func helmLint(set ...string) error {
	_, err := run(s.helm, chartArgs([]string{"lint", "--strict"}, set)...)
	return err
}

// chartArgs is helm's command line: command, then the chart, the release
// namespace, the API server's version and the values, each of set as a
// --set but includeCRDs, which stands as it is.
func chartArgs(command, set []string) []string {
	args := append(command, chartDir, "--namespace", releaseNamespace, "--kube-version", s.kubeVersion)
	for _, v := range set {
		if v == includeCRDs {
			args = append(args, v)
			continue
		}
		args = append(args, "--set", v)
	}
	return args
}

// renderChart renders the chart and decodes its objects.
func renderChart(set ...string) ([]*unstructured.Unstructured, error) {
	out, err := helmTemplate(set...)
	if err != nil {
		return nil, err
	}
	return decode(out)
}

// mustRenderChart is renderChart for a test, which it fails on an error.
func mustRenderChart(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderChart(set...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomizeBuild builds the kustomization in dir and decodes its objects.
func kustomizeBuild(dir string) ([]*unstructured.Unstructured, error) {
	out, err := run(s.kustomize, "build", dir)
	if err != nil {
		return nil, err
	}
	return decode(out)
}

// run runs a tool and returns its standard output; the error carries its
// standard error.
func run(tool string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// decode splits a multi-document YAML stream into objects, leaving out
// empty documents.
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var u unstructured.Unstructured
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("decoding %q: %w", doc, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, &u)
	}
}

// find converts the object of this kind and name into out.
func find(objs []*unstructured.Unstructured, kind, name string, out any) error {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
		}
	}
	return fmt.Errorf("no %s %q among %d objects", kind, name, len(objs))
}

// ofKind returns the objects of this kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// applyDryRun applies each object with server-side apply and dry-run, and
// returns every refusal, each naming its object.
func applyDryRun(ctx context.Context, objs []*unstructured.Unstructured) error {
	var errs []error
	for _, u := range objs {
		u = u.DeepCopy()
		if u.GetKind() == "ValidatingWebhookConfiguration" {
			// The suite installed the chart's configuration under this
			// name with url clientConfigs; applying over it would merge a
			// service into them. A fresh name checks the object alone.
			u.SetName(u.GetName() + "-dry-run")
		}
		err := s.admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner("slimgate-deploy-test"), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// dryRunWarnings applies objs as applyDryRun does, failing the test on a
// refusal, and returns the warnings the API server gave for them.
func dryRunWarnings(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	s.warnings.Take()
	if err := applyDryRun(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	return s.warnings.Take()
}

// applyForReal applies the objects with server-side apply.
func applyForReal(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		err := s.admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()),
			client.FieldOwner("slimgate-deploy-test"), client.ForceOwnership)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}
