package devcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/yaml"
)

// CA is a certificate authority that issues client certificates, as an
// operator would make one for the API server's calls to the webhook.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	// PEM is the CA certificate, PEM-encoded: the bundle a server that
	// requires client certificates trusts.
	PEM []byte
}

// NewCA returns a new self-signed CA with this common name.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: commonName}, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	data, err := certutil.EncodeCertificates(cert)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, PEM: data}, nil
}

// ClientCert issues a client certificate (extended key usage clientAuth,
// valid for a day) for commonName and returns it and its private key,
// PEM-encoded.
func (ca *CA) ClientCert(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the client key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the client certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if certPEM, err = certutil.EncodeCertificates(cert); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// WriteAdmissionConfig writes into dir what makes kube-apiserver present a
// client certificate to the webhook it reaches as target ("host:port" for
// a URL webhook, "<service>.<namespace>.svc:<port>" for a Service): the
// certificate and key, a kubeconfig whose only user is named target, and
// an AdmissionConfiguration that gives that kubeconfig to both webhook
// admission plugins. It returns the AdmissionConfiguration's path, the
// value of --admission-control-config-file.
func WriteAdmissionConfig(dir, target string, certPEM, keyPEM []byte) (string, error) {
	certFile, keyFile := filepath.Join(dir, "webhook-client.crt"), filepath.Join(dir, "webhook-client.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", fmt.Errorf("writing the client certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", fmt.Errorf("writing the client key: %w", err)
	}
	// No current-context: the user applies to target only, never to other
	// webhooks the API server calls.
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.AuthInfos[target] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	kubeconfigFile := filepath.Join(dir, "webhook-kubeconfig.yaml")
	if err := clientcmd.WriteToFile(*kubeconfig, kubeconfigFile); err != nil {
		return "", fmt.Errorf("writing the webhook kubeconfig: %w", err)
	}

	type object = map[string]any
	webhookAdmission := object{
		"apiVersion":     "apiserver.config.k8s.io/v1",
		"kind":           "WebhookAdmissionConfiguration",
		"kubeConfigFile": kubeconfigFile,
	}
	data, err := yaml.Marshal(object{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AdmissionConfiguration",
		"plugins": []object{
			{"name": "ValidatingAdmissionWebhook", "configuration": webhookAdmission},
			{"name": "MutatingAdmissionWebhook", "configuration": webhookAdmission},
		},
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "admission-config.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing the admission configuration: %w", err)
	}
	return path, nil
}
