// Package cloudauth gives the webhook the registry credentials of its own
// cloud identity, the way the kubelet's credential providers give a node
// its own: Amazon ECR (IRSA, EKS Pod Identity or the node's role, through
// the AWS SDK's default credential chain), Google Artifact Registry and
// Container Registry (GKE Workload Identity or the node's service account,
// through Application Default Credentials) and Azure Container Registry
// (Azure workload identity or a managed identity, through azidentity's
// DefaultAzureCredential, exchanged for an ACR refresh token).
//
// Keychain is an authn.Keychain over the providers chosen. Each provider
// answers only for its own registry hosts and is anonymous for every
// other, so a cloud credential never reaches another registry. Tokens are
// cached per provider and registry until shortly before they expire; a
// fetch is shared by the callers waiting for it and bounded by its own
// timeout, while each caller waits only as long as its own context allows.
// A provider's failure fails the inspection of that image only, as
// registry.ReasonCredentials (an availability failure, which a policy's
// onInspectionError decides).
//
// Pull secrets keep precedence: Keychain.After puts a Pod's pull-secret
// keychain first, so the cloud identity is asked only for a registry no
// pull secret names.
//
// The package links the AWS and Azure SDKs; only the webhook imports it
// (slimgate check reads the Docker configuration and its credential
// helpers instead).
package cloudauth
