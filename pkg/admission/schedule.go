package admission

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// Bounds of one review, by default.
const (
	// DefaultMaxImages is the default bound on the distinct image
	// references one review inspects.
	DefaultMaxImages = 64
	// DefaultMaxRegistries is the default bound on the distinct
	// registries one review contacts.
	DefaultMaxRegistries = 16
)

// Reasons a review's own images keep an image from being judged. Each is
// the request's doing, so each is a violation (rule inspection.invalid)
// whose action follows the policy's mode, whatever its onInspectionError
// says: a request can never get an image admitted by naming more than
// slimgate judges.
const (
	// ReasonTooManyImages: the request names more distinct images than a
	// review inspects (Options.MaxImages). Nothing is fetched.
	ReasonTooManyImages = "TooManyImages"
	// ReasonTooManyRegistries: the request names images on more distinct
	// registries than a review contacts (Options.MaxRegistries). Nothing
	// is fetched.
	ReasonTooManyRegistries = "TooManyRegistries"
	// ReasonBudgetExhausted: the review's time ran out before the image's
	// inspection could start, because the request's other images held
	// every slot its registry was given.
	ReasonBudgetExhausted = "BudgetExhausted"
)

// refused is the result for an image the request kept from being judged,
// for reason (one of the above, or policy.ReasonEvaluationDeadline): an
// inspection.invalid finding in the policy's mode, whatever
// onInspectionError says, with a message and remedy for what the request
// did (policy.InspectionFailed words failures of the image itself).
func refused(spec *v1alpha1.SlimImagePolicySpec, ref, reason, message, remedy string) policy.Result {
	res := policy.Result{Image: ref, Verdict: policy.VerdictAllow, Findings: []policy.Finding{{
		Rule:     policy.RuleInspectionInvalid,
		Action:   policy.ActionFor(spec.Mode),
		Message:  message,
		Evidence: policy.Evidence{Reason: reason},
		Remedy:   remedy,
	}}}
	if res.Findings[0].Action == policy.ActionDeny {
		res.Verdict = policy.VerdictDeny
	}
	return res
}

// notInspected is the message of an image not inspected for reason.
func notInspected(reason, detail string) string {
	return policy.Failure{Reason: reason, Detail: detail}.String()
}

// fetch is one inspection of a review: a reference under one policy's
// egress rules and platforms (see fetchKey), and the policies that judge
// what it finds.
type fetch struct {
	req      registry.Request
	host     string
	policies []*compiledPolicy
	// fetched is set by the fetch's goroutine once the registry answered
	// and evaluation began: a fetch that has not answered by the end is
	// then held up by its image's contents, not by the registry.
	fetched atomic.Bool
	// Set by schedule, on the review's goroutine.
	started, answered bool
	out               found
}

// found is what a fetch brought back: an error, or per policy of the fetch (in
// its order) the evaluation of each image.
type found struct {
	err     error
	results [][]policy.Result
}

// parseReference reads a reference as the registry client will
// ("golang" is index.docker.io/library/golang:latest); nil for one that
// does not parse, which no registry is asked for.
func parseReference(ref string) name.Reference {
	r, err := name.ParseReference(strings.TrimSpace(ref))
	if err != nil {
		return nil
	}
	return r
}

// registryOf names the registry a parsed reference is fetched from; ""
// for nil.
func registryOf(r name.Reference) string {
	if r == nil {
		return ""
	}
	return r.Context().RegistryStr()
}

// overLimit is a request over a review's bounds: the reason, the image
// that first went over, and what to say about it.
type overLimit struct {
	reason, message, remedy string
	at                      int // index in the request's images
}

// overBounds checks the review's bounds on the images that policies judge
// (judged[i] lists the policies judging imgs[i]), counting distinct
// references first and then their registries, each parsed once: the work
// stays proportional to the object, and the registries are only counted
// for a request within the image bound. It returns nil when the request
// is within the bounds, and then each judged reference parsed (nil for
// one that does not parse).
func (h *Handler) overBounds(imgs []Image, judged [][]*compiledPolicy) (*overLimit, map[string]name.Reference) {
	parsed := make(map[string]name.Reference, min(len(imgs), h.opts.MaxImages+1))
	var distinct []int // index of each distinct reference's first image
	for i, img := range imgs {
		if _, seen := parsed[img.Reference]; len(judged[i]) > 0 && !seen {
			parsed[img.Reference] = nil
			distinct = append(distinct, i)
		}
	}
	if n, limit := len(distinct), h.opts.MaxImages; n > limit {
		return &overLimit{reason: ReasonTooManyImages, at: distinct[limit],
			message: notInspected(ReasonTooManyImages, fmt.Sprintf("the request names %d distinct images; a review inspects at most %d", n, limit)),
			remedy:  fmt.Sprintf("name at most %d distinct images per object, or split the workload", limit)}, nil
	}
	hosts := make(map[string]bool, len(distinct))
	first := -1
	for _, i := range distinct {
		ref := parseReference(imgs[i].Reference)
		parsed[imgs[i].Reference] = ref
		host := registryOf(ref)
		if host == "" || hosts[host] {
			continue
		}
		hosts[host] = true
		if len(hosts) == h.opts.MaxRegistries+1 {
			first = i
		}
	}
	if n, limit := len(hosts), h.opts.MaxRegistries; n > limit {
		return &overLimit{reason: ReasonTooManyRegistries, at: first,
			message: notInspected(ReasonTooManyRegistries, fmt.Sprintf("the request names images on %d registries; a review contacts at most %d", n, limit)),
			remedy:  fmt.Sprintf("pull from at most %d registries per object, for example through a mirror", limit)}, nil
	}
	return nil, parsed
}

// judgments reports the request over the bounds: one violation per policy
// that judges any of its images, on the image that first went over. No
// image is fetched.
func (o *overLimit) judgments(imgs []Image, judged [][]*compiledPolicy) []judgment {
	img := imgs[o.at]
	var out []judgment
	seen := make(map[*compiledPolicy]bool)
	for _, ps := range judged {
		for _, p := range ps {
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, judgment{image: img, policy: p.object,
				results: []policy.Result{refused(&p.object.Spec, img.Reference, o.reason, o.message, o.remedy)}})
		}
	}
	return out
}

// lateAnswers is how long inspections still running when a review's
// budget is spent are waited for. The inspector honours the deadline, so
// they end at once; one that does not is not waited for beyond this, and
// counts as not answered in time.
const lateAnswers = 100 * time.Millisecond

// schedule runs the fetches, at most limit at a time, sharing the slots
// fairly among registries so that no registry's images can take another
// registry's share of the budget:
//
//   - fetches start at once, up to limit, taken round-robin over the
//     registries in the order the request names them;
//   - a registry holds at most its share of the slots, limit divided by
//     the registries that still have work (rounded up), so a registry
//     that hangs holds only its own share, and the others' images start
//     within their first round; a registry that is done leaves its share
//     to the others;
//   - no fetch starts once ctx is done.
//
// It returns when every fetch has answered, or when ctx is done and the
// fetches still running have had lateAnswers to return. A fetch that never
// started was starved by the request's own images on its registry; one
// that started and did not answer met a registry that did not answer in
// its share of the budget (see judge for what each means).
func schedule(ctx context.Context, fetches []*fetch, limit int, run func(context.Context, *fetch) found) {
	if len(fetches) == 0 {
		return
	}
	queues := make(map[string][]*fetch)
	var hosts []string
	for _, f := range fetches {
		if _, ok := queues[f.host]; !ok {
			hosts = append(hosts, f.host)
		}
		queues[f.host] = append(queues[f.host], f)
	}
	type answer struct {
		f   *fetch
		out found
	}
	answers := make(chan answer, len(fetches)) // workers never block on it
	running := make(map[string]int, len(hosts))
	inFlight, active, next := 0, len(hosts), 0
	start := func() bool {
		if active == 0 {
			return false
		}
		share := (limit + active - 1) / active
		for range hosts {
			host := hosts[next]
			next = (next + 1) % len(hosts)
			q := queues[host]
			if len(q) == 0 || running[host] >= share {
				continue
			}
			f := q[0]
			queues[host] = q[1:]
			f.started = true
			running[host]++
			inFlight++
			go func() { answers <- answer{f, run(ctx, f)} }()
			return true
		}
		return false
	}
	finish := func(a answer) {
		a.f.answered, a.f.out = true, a.out
		host := a.f.host
		running[host]--
		inFlight--
		if running[host] == 0 && len(queues[host]) == 0 {
			active--
		}
	}
	for ctx.Err() == nil {
		for inFlight < limit && ctx.Err() == nil && start() {
		}
		if inFlight == 0 {
			return // every fetch answered
		}
		select {
		case a := <-answers:
			finish(a)
		case <-ctx.Done():
		}
	}
	late := time.NewTimer(lateAnswers)
	defer late.Stop()
	for inFlight > 0 {
		select {
		case a := <-answers:
			finish(a)
		case <-late.C:
			return
		}
	}
}
