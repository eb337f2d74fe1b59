package cloudauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// world stands loopback servers in for the clouds' host names: one
// certificate names every host, and routes maps each "host:443" to the
// server that plays it.
type world struct {
	cert   tls.Certificate
	pool   *x509.CertPool
	routes map[string]string
}

// hostNames are the names the test certificate is valid for.
var hostNames = []string{
	"123456789012.dkr.ecr.us-west-2.amazonaws.com", "europe-docker.pkg.dev", "slimtest.azurecr.io",
	"registry.example.test", "entra.test", "login.microsoftonline.com",
}

func newWorld(t *testing.T) *world {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("cloudauth-test", nil, hostNames)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &world{cert: cert, pool: pool, routes: map[string]string{}}
}

// serve starts a TLS server for h and routes the names to it.
func (w *world) serve(t *testing.T, h http.Handler, names ...string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{w.cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, n := range names {
		w.routes[n+":443"] = srv.Listener.Addr().String()
	}
}

// transport routes the world's names to their servers and trusts its
// certificate: what the providers' token requests go through. Any other
// name fails, so nothing leaves the machine.
func (w *world) transport() http.RoundTripper {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := w.routes[addr]; ok {
				return d.DialContext(ctx, network, to)
			}
			if host, _, _ := net.SplitHostPort(addr); host == "127.0.0.1" {
				return d.DialContext(ctx, network, addr)
			}
			return nil, fmt.Errorf("the test world has no %s", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: w.pool, MinVersion: tls.VersionTLS12},
	}
}
