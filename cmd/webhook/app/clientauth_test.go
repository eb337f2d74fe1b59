package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/devcluster"
)

// A webhook told to require client certificates never serves without
// them: when the CA bundle is missing or holds no certificate, Run fails
// instead of starting an open server. (test/e2e covers a working
// configuration with the API server presenting its certificate.)
func TestClientCAMissingFailsRun(t *testing.T) {
	needAPIServer(t)
	for _, tc := range []struct {
		name    string
		content string // "" leaves the file out
	}{
		{name: "missing file"},
		{name: "no certificate in it", content: "not a certificate\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t)
			writeSelfSigned(t, o.CertDir)
			o.ClientCAName = "client-ca.crt"
			if tc.content != "" {
				if err := os.WriteFile(filepath.Join(o.CertDir, o.ClientCAName), []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			run := devcluster.Go(context.Background(), func(ctx context.Context) error { return app.Run(ctx, o) })
			select {
			case <-run.Done():
			case <-time.After(time.Minute):
				_ = run.Stop(30 * time.Second)
				t.Fatal("Run kept serving without a usable client CA")
			}
			err := run.Err()
			if err == nil || !strings.Contains(err.Error(), "client CA") {
				t.Fatalf("Run returned %v, want an error about the client CA", err)
			}
		})
	}
}
