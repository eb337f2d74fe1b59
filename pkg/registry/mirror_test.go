package registry

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/mirrors"
)

// mirrorTable parses the YAML form of a mirror configuration.
func mirrorTable(t *testing.T, format string, args ...any) *mirrors.Table {
	t.Helper()
	m, err := mirrors.Parse(fmt.Appendf(nil, format, args...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// linuxImage builds a one-layer linux/amd64 image with this history line.
func linuxImage(t *testing.T, line string) v1.Image {
	return buildImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, line)
}

// requests is the number of requests a test registry has received.
func (tr *testRegistry) requests() int {
	n := 0
	for _, c := range tr.Counts() {
		n += c
	}
	return n
}

// judged fails the test unless insp holds exactly img's facts for ref.
func judged(t *testing.T, insp *Inspection, img v1.Image, ref string) {
	t.Helper()
	if len(insp.Images) != 1 {
		t.Fatalf("%d images judged, want 1", len(insp.Images))
	}
	if diff := cmp.Diff(expectedFacts(t, img, ref), insp.Images[0]); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
}

// A tag is read from the first mirror that has it, in the configured
// order: what that mirror serves is what the node would run, so it is
// judged, even when the upstream's tag names other content. Neither the
// later mirror nor the upstream is asked.
func TestMirrorsAreTriedInOrder(t *testing.T) {
	upstream, first, second := newTestRegistry(t, nil), newTestRegistry(t, nil), newTestRegistry(t, nil)
	fat, slim, other := linuxImage(t, "RUN apt-get install -y gcc"), linuxImage(t, "COPY app /app"), linuxImage(t, "RUN other")
	ref := upstream.push(t, "team/app:v1", fat)
	first.push(t, "team/app:v1", slim)
	second.push(t, "team/app:v1", other)
	r, _ := newTestRemote(t, Options{Mirrors: mirrorTable(t, `%s: {endpoints: ["http://%s", "http://%s"]}`, upstream.Host, first.Host, second.Host)})

	insp, err := inspectWithin(r, 10*time.Second, plainRequest(ref, upstream.Host, first.Host, second.Host))
	if err != nil {
		t.Fatal(err)
	}
	judged(t, insp, slim, ref)
	if n, m := upstream.requests(), second.requests(); n+m != 0 {
		t.Errorf("the upstream got %d requests and the second mirror %d, want none", n, m)
	}
	if first.Counts()["blob GET"] != 1 {
		t.Errorf("the first mirror served %v, want the config blob too", first.Counts())
	}

	// The facts are cached under the upstream's name and digest: the
	// digest reference is confirmed by the mirror with a HEAD, no more.
	first.Reset()
	byDigest := upstream.Host + "/team/app@" + insp.Digest
	insp, err = inspectWithin(r, 10*time.Second, plainRequest(byDigest, upstream.Host, first.Host, second.Host))
	if err != nil {
		t.Fatal(err)
	}
	judged(t, insp, slim, byDigest)
	if got := first.Counts(); !cmp.Equal(got, map[string]int{"manifest HEAD": 1}) {
		t.Errorf("the digest reference cost the mirror %v, want one manifest HEAD", got)
	}
}

// A mirror that does not have the image, or cannot be reached, passes the
// turn to the next endpoint; the upstream comes last, only with fallback.
func TestMirrorFailuresPassTheTurn(t *testing.T) {
	fat, slim := linuxImage(t, "RUN apt-get install -y gcc"), linuxImage(t, "COPY app /app")
	unreachable, err := devcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		fallback  bool
		firstHas  bool // the first mirror has the image; else it answers 404
		down      bool // the first mirror is unreachable instead
		secondHas bool
		want      v1.Image
		reason    Reason
		upstream  bool // the upstream is asked
	}{
		{name: "404 then next", fallback: false, secondHas: true, want: slim},
		{name: "404 everywhere, no fallback", fallback: false, reason: ReasonNotFound},
		{name: "404 then fallback", fallback: true, want: fat, upstream: true},
		{name: "unreachable then fallback", fallback: true, down: true, want: fat, upstream: true},
		{name: "unreachable, no fallback", fallback: false, down: true, reason: ReasonUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			upstream, first, second := newTestRegistry(t, nil), newTestRegistry(t, nil), newTestRegistry(t, nil)
			ref := upstream.push(t, "team/app:v1", fat)
			if c.secondHas {
				second.push(t, "team/app:v1", slim)
			}
			firstHost := first.Host
			if c.down {
				firstHost = unreachable
			}
			table := mirrorTable(t, `%s: {endpoints: ["http://%s", "http://%s"], fallback: %t}`, upstream.Host, firstHost, second.Host, c.fallback)
			r, _ := newTestRemote(t, Options{Mirrors: table, Retries: -1})

			insp, err := inspectWithin(r, 10*time.Second, plainRequest(ref, upstream.Host, firstHost, second.Host))
			if c.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				judged(t, insp, c.want, ref)
			} else {
				ie := wantReason(t, err, c.reason)
				if !strings.Contains(ie.Error(), "tried "+firstHost) {
					t.Errorf("the error does not say what was tried: %v", ie.Error())
				}
			}
			if !c.down && first.Counts()["manifest GET"] == 0 {
				t.Errorf("the first mirror was not asked: %v", first.Counts())
			}
			if asked := upstream.requests() > 0; asked != c.upstream {
				t.Errorf("upstream asked: %t, want %t", asked, c.upstream)
			}
		})
	}
}

// The egress rules apply to a mirror as to the registry a workload names:
// a mirror on a private network needs allowPrivateNetworks, one outside
// registries.allow is not contacted, and plain HTTP needs the host listed
// as insecure. A refused mirror passes the turn; with no fallback the
// refusal is the failure.
func TestEgressRulesApplyToMirrors(t *testing.T) {
	upstream, mirror := newTestRegistry(t, nil), newTestRegistry(t, nil)
	fat, slim := linuxImage(t, "RUN apt-get install -y gcc"), linuxImage(t, "COPY app /app")
	ref := upstream.push(t, "team/app:v1", fat)
	mirror.push(t, "team/app:v1", slim)
	hubRef := "docker.io/library/nginx:latest" // its upstream is never contacted here
	mirror.push(t, "library/nginx:latest", slim)
	table := mirrorTable(t, `{%s: {endpoints: ["http://%s"]}, docker.io: {endpoints: ["http://%s"], fallback: false}}`,
		upstream.Host, mirror.Host, mirror.Host)

	for _, c := range []struct {
		name   string
		ref    string
		rules  EgressRules
		want   v1.Image
		reason Reason
	}{
		{name: "private network refused", ref: hubRef, reason: ReasonEgressRefused,
			rules: EgressRules{Enabled: true, Insecure: []string{mirror.Host}}},
		{name: "private network allowed", ref: hubRef, want: slim,
			rules: EgressRules{Enabled: true, AllowPrivateNetworks: true, Insecure: []string{mirror.Host}}},
		{name: "not in registries.allow: fallback", ref: ref, want: fat,
			rules: EgressRules{Enabled: true, AllowPrivateNetworks: true, AllowRegistries: []string{upstream.Host}, Insecure: []string{upstream.Host, mirror.Host}}},
		{name: "not in registries.allow: no fallback", ref: hubRef, reason: ReasonEgressRefused,
			rules: EgressRules{Enabled: true, AllowPrivateNetworks: true, AllowRegistries: []string{"docker.io", "index.docker.io"}, Insecure: []string{mirror.Host}}},
		{name: "plain HTTP not listed", ref: hubRef, reason: ReasonEgressRefused, rules: EgressRules{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mirror.Reset()
			r, _ := newTestRemote(t, Options{Mirrors: table, Retries: -1})
			insp, err := inspectWithin(r, 10*time.Second, Request{Reference: c.ref, Egress: c.rules})
			if c.want == nil {
				ie := wantReason(t, err, c.reason)
				if !strings.Contains(ie.Error(), "mirror "+mirror.Host) {
					t.Errorf("the refusal does not name the mirror: %v", ie.Error())
				}
				if n := mirror.requests(); n != 0 {
					t.Errorf("the refused mirror got %d requests", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			judged(t, insp, c.want, insp.Reference)
		})
	}
}

// Failures count against the endpoint that failed: an unreachable mirror
// opens its own circuit, not the upstream's, which keeps serving; the
// mirror's host has its own value of the registry label.
func TestMirrorBreakerAndMetricsPerEndpoint(t *testing.T) {
	upstream := newTestRegistry(t, nil)
	unreachable, err := devcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	img := linuxImage(t, "COPY app /app")
	table := mirrorTable(t, `%s: {endpoints: ["http://%s"]}`, upstream.Host, unreachable)
	r, metrics := newTestRemote(t, Options{Mirrors: table, Retries: -1, BreakerThreshold: 2})
	for i := range 3 {
		ref := upstream.push(t, fmt.Sprintf("team/app:v%d", i), img)
		if _, err := inspectWithin(r, 10*time.Second, plainRequest(ref, upstream.Host, unreachable)); err != nil {
			t.Fatalf("inspection %d: %v", i, err)
		}
	}
	if open, _ := breakerOf(r, unreachable); !open {
		t.Error("the unreachable mirror's circuit is closed")
	}
	if open, failures := breakerOf(r, upstream.Host); open || failures != 0 {
		t.Errorf("the upstream's circuit: open %t, %d failures", open, failures)
	}
	r.SetMetricHosts(nil) // the webhook's policies name no host
	_, _ = inspectWithin(r, 10*time.Second, plainRequest(upstream.Host+"/team/app:v0", upstream.Host, unreachable))
	counters := gatherCounters(t, metrics)
	if counters[fmt.Sprintf(`slimgate_registry_requests_total{outcome="breaker_open",registry=%q}`, unreachable)] == 0 {
		values, err := devcluster.LabelValues(metrics, "slimgate_registry_requests_total", "registry")
		t.Errorf("no breaker_open request counted under the mirror's own label: %v (%v)", values, err)
	}
}

// A mirror that serves the upstream's repositories under a path prefix
// (https://host/v2/PREFIX) is asked for PREFIX/repository.
func TestMirrorWithPrefix(t *testing.T) {
	upstream, mirror := newTestRegistry(t, nil), newTestRegistry(t, nil)
	img := linuxImage(t, "COPY app /app")
	mirror.push(t, "hub-proxy/team/app:v1", img)
	ref := upstream.Host + "/team/app:v1"
	r, _ := newTestRemote(t, Options{Mirrors: mirrorTable(t, `%s: {endpoints: ["http://%s/v2/hub-proxy"], fallback: false}`, upstream.Host, mirror.Host)})
	insp, err := inspectWithin(r, 10*time.Second, plainRequest(ref, upstream.Host, mirror.Host))
	if err != nil {
		t.Fatal(err)
	}
	judged(t, insp, img, ref)
}
