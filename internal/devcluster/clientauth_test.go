package devcluster

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"
)

// A client certificate verifies for client authentication against its own
// CA and against no other.
func TestClientCert(t *testing.T) {
	ca, err := NewCA("callers")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("others")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.ClientCert("kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert := certs[0]
	for _, c := range []struct {
		name string
		ca   *CA
		ok   bool
	}{{"own CA", ca, true}, {"other CA", other, false}} {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(c.ca.PEM)
		_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if (err == nil) != c.ok {
			t.Errorf("%s: verify error %v, want ok %t", c.name, err, c.ok)
		}
	}
}

// The admission configuration points both webhook plugins at a kubeconfig
// whose only user is the webhook's address, with the certificate files.
func TestWriteAdmissionConfig(t *testing.T) {
	dir := t.TempDir()
	path, err := WriteAdmissionConfig(dir, "127.0.0.1:9443", []byte("CERT"), []byte("KEY"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		APIVersion, Kind string
		Plugins          []struct {
			Name          string
			Configuration struct{ APIVersion, Kind, KubeConfigFile string }
		}
	}
	if err := yaml.UnmarshalStrict(data, &got); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if got.APIVersion != "apiserver.config.k8s.io/v1" || got.Kind != "AdmissionConfiguration" || len(got.Plugins) != 2 {
		t.Fatalf("admission configuration:\n%s", data)
	}
	kubeconfigFile := got.Plugins[0].Configuration.KubeConfigFile
	for _, p := range got.Plugins {
		if p.Configuration.Kind != "WebhookAdmissionConfiguration" || p.Configuration.KubeConfigFile != kubeconfigFile {
			t.Errorf("plugin %s: %+v", p.Name, p.Configuration)
		}
	}
	kc, err := clientcmd.LoadFromFile(kubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != "" || len(kc.AuthInfos) != 1 || kc.AuthInfos["127.0.0.1:9443"] == nil {
		t.Fatalf("kubeconfig: current context %q, users %v", kc.CurrentContext, kc.AuthInfos)
	}
	user := kc.AuthInfos["127.0.0.1:9443"]
	for file, want := range map[string]string{user.ClientCertificate: "CERT", user.ClientKey: "KEY"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, string(b)); diff != "" || filepath.Dir(file) != dir {
			t.Errorf("%s (-want +got):\n%s", file, diff)
		}
	}
}
