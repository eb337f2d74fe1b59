package pullsecret

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"slimgate.dev/slimgate/internal/devcluster"
)

// regcred is a dockerconfigjson Secret in ns holding user's password for
// host, at resourceVersion rv.
func regcred(ns, secretName, rv, host, user string) *corev1.Secret {
	s := &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}
	s.Name, s.Namespace, s.ResourceVersion = secretName, ns, rv
	s.Data = map[string][]byte{corev1.DockerConfigJsonKey: devcluster.DockerConfigJSON(host, user, user+"-password")}
	return s
}

// reader is a fake client holding objs.
func reader(funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
}

// source reads service accounts and secrets from one fake client.
func source(objs ...client.Object) Source {
	c := reader(interceptor.Funcs{}, objs...)
	return Source{Cache: c, API: c}
}

// userFor is the user name kc sends to host, "" when anonymous.
func userFor(t *testing.T, kc authn.Keychain, host string) string {
	t.Helper()
	reg, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(reg)
	if err != nil {
		t.Fatalf("resolving %s: %v", host, err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Username
}

func TestKeychainReadsPodAndServiceAccountSecrets(t *testing.T) {
	sa := &corev1.ServiceAccount{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sa-cred"}, {Name: "pod-cred"}}}
	sa.Name, sa.Namespace = "builder", "team-a"
	// Service accounts come from the cache, secrets from the API server.
	s := Source{Cache: reader(interceptor.Funcs{}, sa), API: reader(interceptor.Funcs{},
		regcred("team-a", "pod-cred", "1", "pod.example.com", "pod-user"),
		regcred("team-a", "sa-cred", "1", "sa.example.com", "sa-user"),
		regcred("team-b", "other-cred", "1", "other.example.com", "other-user"),
	)}
	kc, scope, err := s.Keychain(context.Background(), "team-a", "builder", []string{"pod-cred", "missing", ""})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, host := range []string{"pod.example.com", "sa.example.com", "other.example.com"} {
		got[host] = userFor(t, kc, host)
	}
	want := map[string]string{"pod.example.com": "pod-user", "sa.example.com": "sa-user", "other.example.com": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("users by registry (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(scope, "team-a/") || len(scope) != len("team-a/")+32 {
		t.Errorf("scope %q, want team-a/ and 32 hex digits", scope)
	}
}

// A service account the cache does not hold yet (created a moment ago)
// is read from the API server.
func TestKeychainReadsServiceAccountMissingFromCache(t *testing.T) {
	sa := &corev1.ServiceAccount{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sa-cred"}}}
	sa.Name, sa.Namespace = "builder", "team-a"
	gets := 0
	api := reader(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		gets++
		return c.Get(ctx, key, obj, opts...)
	}}, sa, regcred("team-a", "sa-cred", "1", "sa.example.com", "sa-user"))
	kc, _, err := Source{Cache: reader(interceptor.Funcs{}), API: api}.Keychain(context.Background(), "team-a", "builder", nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := userFor(t, kc, "sa.example.com"); u != "sa-user" || gets != 2 {
		t.Errorf("user %q after %d API reads, want sa-user after 2 (the account, its secret)", u, gets)
	}
}

func TestKeychainWithoutSecretsIsAnonymous(t *testing.T) {
	// No service account at all, and the one secret named is absent from
	// the namespace (the default namespace).
	kc, scope, err := source(regcred("team-a", "regcred", "1", "reg.example.com", "user")).Keychain(context.Background(), "", "", []string{"regcred"})
	if err != nil {
		t.Fatal(err)
	}
	if scope != "" {
		t.Errorf("scope %q, want empty for anonymous access", scope)
	}
	if u := userFor(t, kc, "reg.example.com"); u != "" {
		t.Errorf("user %q sent without any secret", u)
	}
}

// The scope changes whenever the credential set does, and only then.
func TestKeychainScope(t *testing.T) {
	scopeOf := func(names []string, secrets ...*corev1.Secret) string {
		t.Helper()
		objs := make([]client.Object, len(secrets))
		for i, s := range secrets {
			objs[i] = s
		}
		_, scope, err := source(objs...).Keychain(context.Background(), "team-a", "", names)
		if err != nil {
			t.Fatal(err)
		}
		return scope
	}
	a := regcred("team-a", "a", "1", "reg.example.com", "alice")
	b := regcred("team-a", "b", "1", "reg.example.com", "bob")
	base := scopeOf([]string{"a", "b"}, a, b)
	if same := scopeOf([]string{"b", "a"}, a, b); same != base {
		t.Errorf("the order of the secrets changed the scope: %q and %q", base, same)
	}
	for what, other := range map[string]string{
		"fewer secrets":       scopeOf([]string{"a"}, a, b),
		"another version":     scopeOf([]string{"a", "b"}, a, regcred("team-a", "b", "2", "reg.example.com", "bob")),
		"another content":     scopeOf([]string{"a", "b"}, a, regcred("team-a", "b", "1", "reg.example.com", "carol")),
		"another secret name": scopeOf([]string{"a", "c"}, a, regcred("team-a", "c", "1", "reg.example.com", "bob")),
	} {
		if other == base {
			t.Errorf("%s: same scope %q", what, base)
		}
	}
}

func TestKeychainReportsAPIErrors(t *testing.T) {
	for _, resource := range []string{"serviceaccounts", "secrets"} {
		t.Run(resource, func(t *testing.T) {
			denied := apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "x", errors.New("rbac"))
			c := reader(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, isSecret := obj.(*corev1.Secret); isSecret == (resource == "secrets") {
					return denied
				}
				return c.Get(ctx, key, obj, opts...)
			}}, regcred("team-a", "regcred", "1", "reg.example.com", "user"))
			_, _, err := Source{Cache: c, API: c}.Keychain(context.Background(), "team-a", "", []string{"regcred"})
			if !errors.Is(err, denied) {
				t.Fatalf("error %v, want the API's forbidden error wrapped", err)
			}
			if !strings.Contains(err.Error(), "team-a/") {
				t.Errorf("error %q does not name what was read", err)
			}
		})
	}
}

// The cache keeps of a service account what Keychain reads, and nothing
// else.
func TestStripServiceAccount(t *testing.T) {
	yes := true
	sa := &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "builder", UID: "uid", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"note": strings.Repeat("x", 4096)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Secrets:                      []corev1.ObjectReference{{Name: "builder-token"}},
		ImagePullSecrets:             []corev1.LocalObjectReference{{Name: "pull"}},
		AutomountServiceAccountToken: &yes,
	}
	got, err := StripServiceAccount(sa)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "builder", UID: "uid", ResourceVersion: "7"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stripped (-want +got):\n%s", diff)
	}
	// Stripping again changes nothing (informers may hand it a stripped
	// object), and other objects pass as they are.
	again, err := StripServiceAccount(got)
	if err != nil || !cmp.Equal(got, again) {
		t.Errorf("stripping twice: %v, %v", again, err)
	}
	other := &corev1.Secret{}
	if same, err := StripServiceAccount(other); err != nil || same != any(other) {
		t.Errorf("a Secret came back as %v, %v", same, err)
	}
}
