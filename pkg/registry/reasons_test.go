package registry

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReasonsListsEveryReason: every Reason constant of the package is in
// Reasons, so the tests that take each reason through its class (package
// inspection) see a new one.
func TestReasonsListsEveryReason(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []Reason
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || spec.Type == nil {
				return true
			}
			if id, ok := spec.Type.(*ast.Ident); ok && id.Name == "Reason" {
				for _, v := range spec.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						declared = append(declared, Reason(lit.Value[1:len(lit.Value)-1]))
					}
				}
			}
			return true
		})
	}
	listed := Reasons()
	slices.Sort(declared)
	slices.Sort(listed)
	if len(declared) < 9 || !slices.Equal(declared, listed) {
		t.Errorf("declared reasons %q, Reasons() %q", declared, listed)
	}
}
