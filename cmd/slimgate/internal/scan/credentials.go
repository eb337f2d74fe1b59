package scan

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/pkg/pullsecret"
)

// Credentials say how a namespace's images were pulled.
const (
	// CredentialsPullSecrets: with the pull secrets of each workload's Pod
	// spec and service account, as the webhook and the kubelet pull.
	CredentialsPullSecrets = "pullSecrets"
	// CredentialsAnonymous: anonymously, because the caller may not read
	// the namespace's secrets or service accounts; images of private
	// registries then fail to inspect.
	CredentialsAnonymous = "anonymous"
)

// credentials holds, per namespace scanned, whether the caller may read
// what the pull secrets are made of.
type credentials struct {
	source pullsecret.Source
	// mode is CredentialsPullSecrets or CredentialsAnonymous, by namespace.
	mode map[string]string
}

// credentialsFor asks the API server, per namespace, whether the caller
// may get secrets and service accounts there.
func credentialsFor(ctx context.Context, c client.Client, namespaces []string) (*credentials, error) {
	cr := &credentials{source: pullsecret.Source{Cache: c, API: c}, mode: map[string]string{}}
	for _, ns := range namespaces {
		mode := CredentialsPullSecrets
		for _, resource := range []string{"secrets", "serviceaccounts"} {
			ok, err := mayGet(ctx, c, ns, resource)
			if err != nil {
				return nil, err
			}
			if !ok {
				mode = CredentialsAnonymous
			}
		}
		cr.mode[ns] = mode
	}
	return cr, nil
}

// mayGet asks whether the caller may get resource in namespace.
func mayGet(ctx context.Context, c client.Client, namespace, resource string) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "get", Resource: resource},
	}}
	if err := c.Create(ctx, review); err != nil {
		return false, fmt.Errorf("asking whether you may get %s in %s: %w", resource, namespace, err)
	}
	return review.Status.Allowed, nil
}

// keychain is the engine's admission.KeychainFunc: the pull secrets where
// the caller may read them, anonymous elsewhere.
func (c *credentials) keychain(ctx context.Context, namespace, serviceAccount string, pullSecrets []string) (authn.Keychain, string, error) {
	if c.mode[namespace] != CredentialsPullSecrets {
		return nil, "", nil
	}
	return c.source.Keychain(ctx, namespace, serviceAccount, pullSecrets)
}
