package registry

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPaceIsAskedBeforeEveryRequest: Request.Pace is called once per
// request the registry receives (the ping included), with the registry's
// host, never for a cached answer; its error ends the inspection as a
// timeout, before any request.
func TestPaceIsAskedBeforeEveryRequest(t *testing.T) {
	reg := newTestRegistry(t, nil)
	ref := reg.push(t, "team/app:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "COPY . /src"))
	r, _ := newTestRemote(t, Options{})
	var hosts []string
	req := plainRequest(ref, reg.Host)
	req.Pace = func(_ context.Context, host string) error {
		hosts = append(hosts, host)
		return nil
	}
	if _, err := r.Inspect(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, n := range reg.Counts() {
		sent += n
	}
	if sent == 0 || len(hosts) != sent {
		t.Fatalf("pace asked %d times for %d requests", len(hosts), sent)
	}
	for _, h := range hosts {
		if h != reg.Host {
			t.Fatalf("pace asked for host %q, want %q", h, reg.Host)
		}
	}
	hosts = nil
	if _, err := r.Inspect(context.Background(), req); err != nil || len(hosts) != 0 {
		t.Fatalf("cached answer: err %v, pace asked %d times, want none", err, len(hosts))
	}

	reg.Reset()
	other := reg.push(t, "team/other:v1", buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, "COPY . /other"))
	req = plainRequest(other, reg.Host)
	req.Pace = func(context.Context, string) error { return errors.New("no turn") }
	_, err := r.Inspect(context.Background(), req)
	wantReason(t, err, ReasonTimeout)
	if got := reg.Counts(); len(got) != 0 {
		t.Fatalf("a refused turn still sent %v", got)
	}
}
