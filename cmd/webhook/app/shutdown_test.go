package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/cmd/webhook/app"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
)

// slowManifests serves a registry whose first manifest request for repo
// once armed waits for hold (or until release is closed); seen is closed
// when that request arrives. Arm it after pushing: pushes ask for
// manifests too.
type slowManifests struct {
	next    http.Handler
	repo    string
	hold    time.Duration
	release chan struct{}
	seen    chan struct{}
	armed   atomic.Bool
	once    sync.Once
}

func (s *slowManifests) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.armed.Load() && strings.HasPrefix(r.URL.Path, "/v2/"+s.repo+"/manifests/") {
		first := false
		s.once.Do(func() { first = true })
		if first {
			close(s.seen)
			select {
			case <-time.After(s.hold):
			case <-s.release:
			case <-r.Context().Done():
			}
		}
	}
	s.next.ServeHTTP(w, r)
}

// reviewResult is what the client made of its POST.
type reviewResult struct {
	status int
	review admissionv1.AdmissionReview
	err    error
	at     time.Time
}

// TestShutdownFinishesInFlightReview cancels Run's context while a review
// waits on a slow registry: the review must still be answered, with its
// verdict, before Run returns (in a Pod the process exits then, and an
// unanswered connection is reset); Run returns nil within the shutdown
// timeout; and the port refuses connections afterwards.
func TestShutdownFinishesInFlightReview(t *testing.T) {
	needAPIServer(t)
	ctx := context.Background()
	const hold = 3 * time.Second
	slow := &slowManifests{next: devcluster.NewRegistry(), repo: "slow/golang-app", hold: hold,
		release: make(chan struct{}), seen: make(chan struct{})}
	srv := httptest.NewServer(slow)
	t.Cleanup(srv.Close)
	// Runs before srv.Close: never leave a handler blocked.
	t.Cleanup(func() { close(slow.release) })
	host := strings.TrimPrefix(srv.URL, "http://")
	image := host + "/" + slow.repo + ":1"
	img, err := devcluster.GoSDKApp().Build(256, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := devcluster.Push(image, img); err != nil {
		t.Fatal(err)
	}
	slow.armed.Store(true)

	o := options(t)
	o.Registerer = prometheus.NewRegistry()
	// Longer than the registry holds the review: with less (100ms) the
	// review is answered only after Run returned and Run fails.
	o.ShutdownTimeout = 5 * time.Second
	writeSelfSigned(t, o.CertDir)
	run := webhooktest.Start(t, o)
	waitReady(t, o, run)

	p := createPolicy(t, v1alpha1.ModeEnforce, host)
	// Ready means the webhook's own cache has the policy.
	if err := devcluster.WaitPolicyReady(ctx, kube, p.Name, controller.ConditionReady, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	uid := types.UID("shutdown-" + rand.String(8))
	body := podReview(t, uid, "default", "slow", image)
	addr := net.JoinHostPort(o.Host, fmt.Sprint(o.Port))
	hc := tlsClient(t, filepath.Join(o.CertDir, "tls.crt"))
	results := make(chan reviewResult, 1)
	go func() { results <- postReview(hc, "https://"+addr+app.PodsPath+"?timeout=10s", body) }()

	select {
	case <-slow.seen:
	case r := <-results:
		t.Fatalf("the review ended before it reached the registry: %+v", r)
	case <-time.After(15 * time.Second):
		t.Fatal("the review never reached the registry")
	}
	cancelled := time.Now()
	margin := 3 * time.Second
	stopErr := run.Stop(o.ShutdownTimeout + margin)
	returned := time.Now()
	t.Logf("Run returned %v after its context was cancelled (shutdown timeout %v)", returned.Sub(cancelled).Round(time.Millisecond), o.ShutdownTimeout)

	// (1) The review was answered before Run returned. In this process
	// the HTTP server may go on after Run; in a Pod it would not, so a
	// response arriving later than a moment after Run returned is one the
	// API server would never have received.
	var r reviewResult
	select {
	case r = <-results:
	case <-time.After(15 * time.Second):
		t.Fatal("no response to the review")
	}
	// Generous for a loaded CI machine; without the fix the answer comes
	// about `hold` (3 s) after Run returned.
	const grace = time.Second
	if late := r.at.Sub(returned); late > grace {
		t.Errorf("the review was answered %v after Run returned: a webhook process would have exited and reset the connection", late.Round(time.Millisecond))
	}
	if r.err != nil {
		t.Errorf("posting the review: %v", r.err)
	} else {
		checkDenied(t, r, uid)
	}

	// (2) Run returned nil, within the shutdown timeout and a margin.
	switch {
	case errors.Is(stopErr, devcluster.ErrNotStopped):
		t.Errorf("Run did not return within %v of its context ending", o.ShutdownTimeout+margin)
	case stopErr != nil:
		t.Errorf("Run returned %v", stopErr)
	}

	// (3) The review's Event was written before Run returned: the event
	// writer stops after the webhook server has drained.
	var evs eventsv1.EventList
	if err := kube.List(ctx, &evs, client.InNamespace("default"), client.MatchingFields{"regarding.name": "slow"}); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 || evs.Items[0].Reason != "ImageRejected" {
		t.Errorf("events regarding the Pod reviewed during shutdown: %+v, want its ImageRejected", evs.Items)
	}

	// (4) The port is closed: a new connection is refused.
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Run returned", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing %s after Run returned: %v, want connection refused", addr, err)
	}
}

// podReview is the API server's review of a CREATE of Pod ns/name, whose
// container "app" runs image.
func podReview(t *testing.T, uid types.UID, ns, name, image string) []byte {
	t.Helper()
	return webhooktest.PodReview(t, uid, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	})
}

// tlsClient trusts only the certificates in the PEM file and keeps no
// idle connections.
func tlsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return webhooktest.Client(t, webhooktest.ClientTLS{CA: pem})
}

// postReview posts body and decodes the AdmissionReview answered.
func postReview(hc *http.Client, url string, body []byte) reviewResult {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return reviewResult{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	r := reviewResult{status: resp.StatusCode, at: time.Now()}
	if err != nil {
		r.err = fmt.Errorf("reading the response: %w", err)
		return r
	}
	if err := json.Unmarshal(data, &r.review); err != nil {
		r.err = fmt.Errorf("decoding %q: %w", data, err)
	}
	return r
}

// checkDenied checks r is an HTTP 200 AdmissionReview denying request uid
// for its Go SDK.
func checkDenied(t *testing.T, r reviewResult, uid types.UID) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("HTTP status %d, want 200", r.status)
	}
	resp := r.review.Response
	if resp == nil {
		t.Fatalf("review has no response: %+v", r.review)
	}
	type verdict struct {
		APIVersion, Kind string
		UID              types.UID
		Allowed          bool
		Code             int32
	}
	got := verdict{APIVersion: r.review.APIVersion, Kind: r.review.Kind, UID: resp.UID, Allowed: resp.Allowed}
	msg := ""
	if resp.Result != nil {
		got.Code, msg = resp.Result.Code, resp.Result.Message
	}
	want := verdict{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", UID: uid, Allowed: false, Code: http.StatusForbidden}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdict (-want +got):\n%s\nmessage: %s", diff, msg)
	}
	if !strings.Contains(msg, "go build") && !strings.Contains(msg, "GOLANG_VERSION") && !strings.Contains(msg, "/usr/local/go") {
		t.Errorf("denial names no Go SDK evidence: %q", msg)
	}
}
