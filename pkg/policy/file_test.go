package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	doc := "apiVersion: slimgate.dev/v1alpha1\nkind: SlimImagePolicy\nmetadata: {name: mine}\nspec: {mode: Warn}\n"
	if err := os.WriteFile(good, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", maxFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(doc+"  unknown: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(good)
	if err != nil || p.Name != "mine" || p.Spec.Mode != "Warn" {
		t.Errorf("ReadFile(good) = %v, %v; want the policy mine in Warn mode", p, err)
	}
	if p, err := ReadFile(""); err != nil || p.Name != Default().Name {
		t.Errorf("ReadFile(\"\") = %v, %v; want the built-in policy", p, err)
	}
	for _, c := range []struct{ path, want string }{
		{big, "larger than"},
		{bad, "bad.yaml: "},
		{filepath.Join(dir, "missing.yaml"), "no such file"},
	} {
		if _, err := ReadFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadFile(%s) error %v, want one saying %q", filepath.Base(c.path), err, c.want)
		}
	}
}
