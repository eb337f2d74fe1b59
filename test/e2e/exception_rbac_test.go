package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/internal/devcluster"
)

// Writing an exception is a permission of its own: a user who may do
// anything with the workloads of a namespace (a Role on every resource of
// the core, apps and batch groups; the built-in "edit" role is empty
// without the controller-manager's aggregation) may not create one until
// bound to slimgate-exception-editor (config/rbac).
func TestExceptionNeedsEditorRole(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, caseLabels(t))
	user := "e2e-dev-" + rand.String(5)
	bind := func(kind, role string) {
		t.Helper()
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: role + "-" + user},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
		if err := e2e.client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	editor := editorRole(t)
	if err := e2e.client.Create(ctx, editor); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(ctx, editor) })
	workloads := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workloads"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"", "apps", "batch"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}
	if err := e2e.client.Create(ctx, workloads); err != nil {
		t.Fatal(err)
	}
	bind("Role", workloads.Name)

	cfg := rest.CopyConfig(e2e.WebhookOptions.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	asUser, err := devcluster.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The user does edit the namespace: the binding is in force.
	eventually(t, 10*time.Second, func() error {
		return asUser.Create(ctx, pod(ns, "mine", e2e.reg.StaticApp()))
	})
	e := sie(ns, "*", time.Now().Add(time.Hour), []string{"*"}, nil)
	if err := asUser.Create(ctx, e.DeepCopy()); !apierrors.IsForbidden(err) {
		t.Fatalf("creating an exception with the edit role only: %v, want forbidden", err)
	}

	bind("ClusterRole", editor.Name)
	eventually(t, 10*time.Second, func() error { return asUser.Create(ctx, e.DeepCopy()) })
	t.Cleanup(func() { _ = e2e.client.Delete(ctx, e) })
}

// editorRole reads the ClusterRole config/rbac ships for exception editors.
func editorRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	var r rbacv1.ClusterRole
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "exception_editor_role.yaml"))
	if err == nil {
		err = yaml.UnmarshalStrict(data, &r)
	}
	if err != nil || r.Name != "slimgate-exception-editor" {
		t.Fatalf("config/rbac/exception_editor_role.yaml: %v, role %q", err, r.Name)
	}
	return &r
}
