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
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Source reads what a Pod's registry credentials are made of.
type Source struct {
	// Cache reads service accounts: an informer cache (the manager's), so
	// that a review makes no API request for them. StripServiceAccount
	// keeps only what Keychain reads.
	Cache client.Reader
	// API reads from the API server: the pull secrets, one GET each, never
	// cached (the webhook holds no Secret it does not use); and a service
	// account the cache does not hold, which in a cluster whose
	// ServiceAccount admission plugin refuses Pods naming a missing one
	// happens only in the moment after the account was created.
	API client.Reader
}

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
func (s Source) Keychain(ctx context.Context, namespace, serviceAccount string, pullSecrets []string) (authn.Keychain, string, error) {
	if namespace == "" {
		namespace = "default"
	}
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	names := slices.Clone(pullSecrets)
	var sa corev1.ServiceAccount
	key := types.NamespacedName{Namespace: namespace, Name: serviceAccount}
	err := s.Cache.Get(ctx, key, &sa)
	if apierrors.IsNotFound(err) {
		err = s.API.Get(ctx, key, &sa)
	}
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
		var secret corev1.Secret
		switch err := s.API.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n}, &secret); {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, "", fmt.Errorf("reading pull secret %s/%s: %w", namespace, n, err)
		}
		secrets = append(secrets, secret)
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

// StripServiceAccount is a cache transform (cache.ByObject.Transform) for
// service accounts: it keeps their identity and imagePullSecrets, all that
// Keychain reads, and drops the rest (labels, annotations, managed fields,
// the legacy token secrets). Anything else passes unchanged.
func StripServiceAccount(obj any) (any, error) {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return obj, nil
	}
	return &corev1.ServiceAccount{
		TypeMeta: sa.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name, UID: sa.UID,
			ResourceVersion: sa.ResourceVersion, DeletionTimestamp: sa.DeletionTimestamp},
		ImagePullSecrets: sa.ImagePullSecrets,
	}, nil
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
