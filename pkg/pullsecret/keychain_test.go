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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

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
	cs := fake.NewClientset(sa,
		regcred("team-a", "pod-cred", "1", "pod.example.com", "pod-user"),
		regcred("team-a", "sa-cred", "1", "sa.example.com", "sa-user"),
		regcred("team-b", "other-cred", "1", "other.example.com", "other-user"),
	)
	kc, scope, err := Keychain(context.Background(), cs, "team-a", "builder", []string{"pod-cred", "missing", ""})
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

func TestKeychainWithoutSecretsIsAnonymous(t *testing.T) {
	cs := fake.NewClientset(regcred("team-a", "regcred", "1", "reg.example.com", "user"))
	// No service account at all, and the one secret named is absent from
	// the namespace (the default namespace).
	kc, scope, err := Keychain(context.Background(), cs, "", "", []string{"regcred"})
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
		objs := make([]runtime.Object, len(secrets))
		for i, s := range secrets {
			objs[i] = s
		}
		_, scope, err := Keychain(context.Background(), fake.NewClientset(objs...), "team-a", "", names)
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
			cs := fake.NewClientset(regcred("team-a", "regcred", "1", "reg.example.com", "user"))
			denied := apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "x", errors.New("rbac"))
			cs.PrependReactor("get", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, denied
			})
			_, _, err := Keychain(context.Background(), cs, "team-a", "", []string{"regcred"})
			if !errors.Is(err, denied) {
				t.Fatalf("error %v, want the API's forbidden error wrapped", err)
			}
			if !strings.Contains(err.Error(), "team-a/") {
				t.Errorf("error %q does not name what was read", err)
			}
		})
	}
}
