package admission

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// judgeOnce posts one review to srv and reports whether it was allowed.
func judgeOnce(t *testing.T, srv http.Handler, body []byte) bool {
	t.Helper()
	w := serve(srv, body)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	return bytes.Contains(w.Body.Bytes(), allowedAnswer)
}

// A tag moved to another image after a Pod was admitted: the next Pod
// CREATE naming it is judged on what the tag names now, not on the digest
// the tag cache remembers for minutes, at the cost of one manifest HEAD;
// the facts of a digest already seen are reused. Workload kinds keep the
// tag cache: a Deployment naming the tag costs no request.
func TestPodCreateRechecksTheTag(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	ref := reg.push(t, "team/app:T", fixtureImage(t, "distroless-static-debian12.json", "slim"))
	h, _ := benchHandler(t, benchReader(t, benchPolicy(reg.host), false), 0)
	srv := serving(h, true)
	if !judgeOnce(t, srv, podReview(t, "first", []string{ref})) {
		t.Fatal("the slim image was denied")
	}
	// The same Pod again: the tag is checked with a HEAD, the facts of its
	// digest come from the cache.
	reg.reset()
	if !judgeOnce(t, srv, podReview(t, "second", []string{ref})) {
		t.Fatal("the slim image was denied the second time")
	}
	if diff := cmp.Diff(map[string]int{"manifest HEAD": 1}, mustSnapshot(reg)); diff != "" {
		t.Errorf("requests of a Pod CREATE naming a cached tag (-want +got):\n%s", diff)
	}

	reg.push(t, "team/app:T", fixtureImage(t, "golang-1.24.4-bookworm.json", "fat"))
	reg.reset()
	if !judgeOnce(t, srv, deploymentReview(t, []string{ref})) {
		t.Error("a Deployment naming the tag was judged anew; workloads keep the tag cache")
	}
	if got := mustSnapshot(reg); len(got) != 0 {
		t.Errorf("a Deployment naming a cached tag made requests: %v", got)
	}
	if judgeOnce(t, srv, podReview(t, "third", []string{ref})) {
		t.Error("a Pod naming the moved tag was admitted on the digest the tag named before")
	}
}

func mustSnapshot(reg *benchRegistry) map[string]int {
	counts, _ := reg.snapshot()
	return counts
}

// spec.requireDigests denies a Pod naming a tag, with the rule and its
// remedy in the message, and admits the same image named by digest.
func TestRequireDigestsDeniesTags(t *testing.T) {
	reg := newBenchRegistry(t, 0)
	img := fixtureImage(t, "distroless-static-debian12.json", "pinned")
	ref := reg.push(t, "team/app:1", img)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p := benchPolicy(reg.host)
	p.Spec.RequireDigests = true
	h, _ := benchHandler(t, benchReader(t, p, false), 0)
	srv := serving(h, true)
	w := serve(srv, podReview(t, "tagged", []string{ref}))
	for _, want := range []string{`"allowed":false`, "reference.digest", "webhook.pinDigests"} {
		if !bytes.Contains(w.Body.Bytes(), []byte(want)) {
			t.Errorf("a Pod naming a tag: answer lacks %s: %s", want, w.Body.String())
		}
	}
	for _, pinned := range []string{ref + "@" + digest.String(), reg.host + "/team/app@" + digest.String()} {
		if !judgeOnce(t, srv, podReview(t, "pinned", []string{pinned})) {
			t.Errorf("%s denied", pinned)
		}
	}
}
