package webhooktest

import (
	"net"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	o, err := Options(cfg, "127.0.0.1", 9443, "/certs")
	if err != nil {
		t.Fatal(err)
	}
	if o.Config != cfg || o.Host != "127.0.0.1" || o.Port != 9443 || o.CertDir != "/certs" {
		t.Errorf("options %+v do not serve as asked", o)
	}
	host, _, err := net.SplitHostPort(o.ProbeAddr)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("probe address %q, want a loopback host:port (%v)", o.ProbeAddr, err)
	}
	if o.MetricsAddr != "0" || !o.PullSecretAuth || o.Concurrency < 1 {
		t.Errorf("options %+v: want metrics off, pull-secret auth on, some concurrency", o)
	}
	if o.DefaultTimeout != 10*time.Second || o.ShutdownTimeout >= StopWithin || o.TimeoutMargin >= o.DefaultTimeout {
		t.Errorf("timeouts: default %s, margin %s, shutdown %s (StopWithin %s)", o.DefaultTimeout, o.TimeoutMargin, o.ShutdownTimeout, StopWithin)
	}
	if o.CertRotation || o.Registerer != nil {
		t.Errorf("options %+v: want no certificate rotation and the global registry unless asked", o)
	}
}
