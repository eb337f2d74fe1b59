package admission

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"slimgate.dev/slimgate/internal/devcluster"
)

// loadResult is what one load run measured.
type loadResult struct {
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %v, p99 %v (%d requests in %v)", r.rps(),
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.requests, r.elapsed.Round(time.Millisecond))
}

// TestLoad is the load run of docs/benchmarks.md: over HTTPS on loopback,
// 64 clients with keep-alive post the 3-container Deployment review as
// fast as they can, first to a server whose handler only answers Allowed,
// then to the real handler with warm caches; both are controller-runtime
// webhook servers configured as cmd/webhook/app configures its own, behind
// the same Budget wrapper. Five rounds alternate between the two; the
// median of the per-round ratios is the figure. Target: the real server keeps at least 70% of the no-op server's
// requests per second. A measurement, run by `make bench`
// (SLIMGATE_BENCH=1); SLIMGATE_LOAD_DURATION sets each round's length
// (default 5s).
func TestLoad(t *testing.T) {
	if os.Getenv("SLIMGATE_BENCH") == "" {
		t.Skip("a measurement: set SLIMGATE_BENCH=1 (make bench runs it)")
	}
	const clients, rounds, target = 64, 5, 0.70
	duration := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SLIMGATE_LOAD_DURATION")); err == nil && d > 0 {
		duration = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	certDir, pool := servingCert(t)

	subject, body, reg := warmSetup(t, false)
	noop := serving(allowAll{}, true)
	realURL := startWebhookServer(ctx, t, certDir, subject)
	noopURL := startWebhookServer(ctx, t, certDir, noop)

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     time.Minute,
	}}
	defer client.CloseIdleConnections()

	// Rounds alternate between the servers; each pair gives a ratio and
	// the median pair is reported, so a burst of load from elsewhere on the
	// machine moves one pair, not the figure.
	type pair struct {
		noop, real loadResult
		ratio      float64
	}
	var pairs []pair
	for round := range rounds {
		n := runLoad(t, client, noopURL, body, clients, duration)
		r := runLoad(t, client, realURL, body, clients, duration)
		pairs = append(pairs, pair{n, r, r.rps() / n.rps()})
		t.Logf("round %d: no-op %v; real %v; ratio %.2f", round+1, n, r, r.rps()/n.rps())
	}
	slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.ratio, b.ratio) })
	med := pairs[len(pairs)/2]
	if counts, total := reg.snapshot(); total != 0 {
		t.Errorf("the warm load run reached the registry: %v", counts)
	}
	ratio := med.ratio
	t.Logf("FIGURE load: %d clients, HTTPS keep-alive, %d rounds of %v each; median round: no-op %v; real %v; real/no-op req/s %.2f (min %.2f, max %.2f; target >= %.2f)",
		clients, rounds, duration, med.noop, med.real, ratio, pairs[0].ratio, pairs[len(pairs)-1].ratio, target)
	if !(ratio >= target) {
		t.Errorf("the real server answered %.0f%% of the no-op server's requests per second, under the %.0f%% target", 100*ratio, 100*target)
	}
}

// runLoad warms the connections for a second, then has clients post body
// to url back to back for d and measures every request.
func runLoad(t *testing.T, client *http.Client, url string, body []byte, clients int, d time.Duration) loadResult {
	t.Helper()
	post := func() (time.Duration, error) {
		start := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Contains(out, allowedAnswer) {
			return 0, fmt.Errorf("status %d: %s", resp.StatusCode, out)
		}
		return took, nil
	}
	phase := func(d time.Duration, record bool) ([][]time.Duration, time.Duration, error) {
		lat := make([][]time.Duration, clients)
		errs := make([]error, clients)
		start := time.Now()
		deadline := start.Add(d)
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					took, err := post()
					if err != nil {
						errs[c] = err
						return
					}
					if record {
						lat[c] = append(lat[c], took)
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, 0, err
			}
		}
		return lat, time.Since(start), nil
	}
	if _, _, err := phase(time.Second, false); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	lat, elapsed, err := phase(d, true)
	if err != nil {
		t.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		t.Fatal("no request completed")
	}
	return loadResult{requests: len(all), elapsed: elapsed, p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// startWebhookServer serves h at /validate-workloads on a loopback port
// with a controller-runtime webhook server set up as cmd/webhook/app sets
// up its own (HTTP/1.1 only), and returns the URL.
func startWebhookServer(ctx context.Context, t *testing.T, certDir string, h http.Handler) string {
	t.Helper()
	port, err := devcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := webhook.NewServer(webhook.Options{
		Host: "127.0.0.1", Port: port, CertDir: certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	srv.Register("/validate-workloads", h)
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	check := srv.StartedChecker()
	if err := devcluster.Poll(ctx, 10*time.Second, func() error { return check(nil) }); err != nil {
		t.Fatalf("webhook server on port %d did not start: %v", port, err)
	}
	return fmt.Sprintf("https://127.0.0.1:%d/validate-workloads?timeout=10s", port)
}

// servingCert writes a self-signed certificate for 127.0.0.1 (client-go's
// generator) as tls.crt and tls.key into a temporary folder, and returns
// the folder and a pool trusting it.
func servingCert(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	crt, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(crt) {
		t.Fatal("no certificate in the generated PEM")
	}
	return dir, pool
}
