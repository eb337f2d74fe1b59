package pullsecret

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keychain builds the keychain a kubelet would use for a Pod: the Pod's
// imagePullSecrets, then those of its service account (default "default"),
// all in namespace. Missing secrets and a missing service account are
// skipped, so with none found the keychain is anonymous.
//
// The returned scope names the credential set: the namespace plus a hash
// of the secrets' names, resourceVersions and contents. It is empty when
// no secret was found (anonymous access may be shared). Pass it as
// registry.Request.CredentialScope so cached authenticated state is never
// shared between namespaces or credential sets.
func Keychain(ctx context.Context, cs kubernetes.Interface, namespace, serviceAccount string, pullSecrets []string) (authn.Keychain, string, error) {
	if namespace == "" {
		namespace = "default"
	}
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	names := slices.Clone(pullSecrets)
	sa, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, serviceAccount, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, "", fmt.Errorf("reading service account %s/%s: %w", namespace, serviceAccount, err)
	default:
		for _, ref := range sa.ImagePullSecrets {
			names = append(names, ref.Name)
		}
	}
	var secrets []corev1.Secret
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, "", fmt.Errorf("reading pull secret %s/%s: %w", namespace, n, err)
		}
		secrets = append(secrets, *s)
	}
	if len(secrets) == 0 {
		return authn.NewMultiKeychain(), "", nil
	}
	kc, err := kauth.NewFromPullSecrets(ctx, secrets)
	if err != nil {
		return nil, "", fmt.Errorf("reading pull secrets in %s: %w", namespace, err)
	}
	return kc, secretScope(namespace, secrets), nil
}

// secretScope hashes what identifies a credential set.
func secretScope(namespace string, secrets []corev1.Secret) string {
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		h := sha256.New()
		for _, k := range slices.Sorted(maps.Keys(s.Data)) {
			fmt.Fprintf(h, "%s=%x;", k, s.Data[k])
		}
		parts = append(parts, fmt.Sprintf("%s@%s#%x", s.Name, s.ResourceVersion, h.Sum(nil)))
	}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return namespace + "/" + hex.EncodeToString(sum[:16])
}
