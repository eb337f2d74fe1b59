package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/events"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/inspection"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimagepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// KeychainFunc returns registry credentials for a Pod's service account and
// image pull secrets, and the scope those credentials stand for.
type KeychainFunc func(ctx context.Context, namespace, serviceAccount string, pullSecrets []string) (authn.Keychain, string, error)

// DecisionRecorder receives the decisions of non-dry-run requests.
type DecisionRecorder interface {
	Record(ctx context.Context, d events.Decision)
}

// ReviewLog receives every Pod the handler admits the creation of (not
// on dry-run), so that Pods created without a review can be told apart
// (internal/controller.ReviewLog).
type ReviewLog interface {
	Reviewed(pod client.Object)
}

// CachedInspector is an Inspector that can also answer from memory alone
// (registry.Remote is one); ok false means Inspect must be called.
type CachedInspector interface {
	InspectCached(req registry.Request) (insp *registry.Inspection, ok bool)
}

// Options configures a Handler.
type Options struct {
	// Reader reads SlimImagePolicies and Namespaces, and the owners of
	// controllers' children (OwnerObjects): the manager's cache.
	Reader client.Reader
	// Inspector fetches image facts.
	Inspector registry.Inspector
	// Keychain supplies pull-secret credentials; nil: anonymous pulls.
	Keychain KeychainFunc
	// Recorder records decisions; nil: nothing is recorded.
	Recorder DecisionRecorder
	// Reviews, when set, logs the Pod CREATEs admitted.
	Reviews ReviewLog
	// Concurrency bounds the registry inspections of one request; 0: 16.
	Concurrency int
	// MaxImages bounds the distinct image references one request may name
	// for inspection; 0: DefaultMaxImages. Beyond it nothing is fetched
	// and each policy reports a violation (ReasonTooManyImages).
	MaxImages int
	// MaxRegistries bounds the distinct registries those images come
	// from; 0: DefaultMaxRegistries (ReasonTooManyRegistries). With
	// Concurrency at least MaxRegistries, every registry's first image
	// starts at once; below it, registries beyond the first Concurrency
	// wait for a slot, and an image that never gets one is a violation
	// (ReasonBudgetExhausted), never an admission.
	MaxRegistries int
	// ControllerIdentities are the user names of the built-in controllers
	// whose children may inherit their owner's standing (see standing.go);
	// nil: DefaultControllerIdentities, empty: none.
	ControllerIdentities []string
	// OwnerWait bounds how long the review of a controller's child waits
	// for its owner in Reader's cache; 0: DefaultOwnerWait; negative: no
	// wait, the cache is read once.
	OwnerWait time.Duration
	// Now is the clock exceptions are judged by (their expires); nil:
	// time.Now.
	Now func() time.Time
}

// Handler is the validating admission handler for Pods, the workload kinds
// that carry a Pod template, and the pods/ephemeralcontainers subresource.
type Handler struct {
	opts     Options
	decoder  *Decoder
	policies policySet
	evals    memo[evalKey, policy.Result]
	// evalFlight shares one evaluation among the reviews that need the
	// same one at once (a rollout of a new image); evaluated counts the
	// evaluations run, for tests.
	evalFlight singleflight.Group
	evaluated  atomic.Int64
	// controllers is the set of Options.ControllerIdentities.
	controllers map[string]bool
	// exceptions holds the compiled SlimImageExceptions, per object
	// generation.
	exceptions memo[exceptionKey, *exception.Exception]
	// staleOwners holds the owner versions a review waited for in vain
	// (see ownerVersion).
	staleOwners memo[ownerVersion, struct{}]
}

// NewHandler returns a Handler.
func NewHandler(o Options) (*Handler, error) {
	if o.Reader == nil || o.Inspector == nil {
		return nil, errors.New("admission handler needs a reader and an inspector")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxImages <= 0 {
		o.MaxImages = DefaultMaxImages
	}
	if o.MaxRegistries <= 0 {
		o.MaxRegistries = DefaultMaxRegistries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	return &Handler{opts: o, decoder: d, controllers: identitySet(o.ControllerIdentities)}, nil
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	log := logf.FromContext(ctx)
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("slimgate judges CREATE and UPDATE only")
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if !supported(gk) {
		return admission.Allowed(fmt.Sprintf("slimgate does not judge %s", gk))
	}
	if req.SubResource != "" && (gk.Kind != "Pod" || req.SubResource != "ephemeralcontainers") {
		return admission.Allowed(fmt.Sprintf("slimgate does not judge the %s subresource", req.SubResource))
	}
	w, err := h.decode(req.Object.Raw, req.Kind)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	// Only a Pod admitted is logged: a refused one never exists, and
	// refusals must not crowd the bounded log (ReviewLog).
	if h.opts.Reviews != nil && gk.Group == "" && gk.Kind == "Pod" && req.Operation == admissionv1.Create &&
		req.SubResource == "" && !isTrue(req.DryRun) {
		defer func() {
			if resp.Allowed {
				h.opts.Reviews.Reviewed(w.Object)
			}
		}()
	}
	imgs := Images(w.Spec, w.Path)
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old, err := h.decode(req.OldObject.Raw, req.Kind)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("old object: %w", err))
		}
		imgs = newImages(imgs, Images(old.Spec, old.Path))
	}
	if len(imgs) == 0 {
		return admission.Allowed("no new images")
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = w.Object.GetNamespace()
	}
	policies, err := h.policiesFor(ctx, namespace)
	if err != nil {
		log.Error(err, "reading policies")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if len(policies) == 0 {
		return admission.Allowed("no SlimImagePolicy applies")
	}
	recheck := rechecksTags(req)
	// A controller's child that inherits every image is admitted whatever
	// its tags name now: the tag cache serves its review (standing.go).
	var st standing
	if recheck && allKeep(policies) {
		if st = h.standingOf(ctx, req, w, nil); st.inheritsAll(imgs) {
			recheck = false
		}
	}
	judgments := h.judge(ctx, namespace, w.Spec, imgs, policies, recheck)
	// Exceptions are judged by the clock at the time of decision: one
	// that expired a moment ago no longer applies.
	now := h.opts.Now()
	if judgments, err = h.waive(ctx, namespace, w, judgments, nil, now); err != nil {
		log.Error(err, "reading the namespace for exceptions")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	record := !isTrue(req.DryRun) && h.opts.Recorder != nil
	if want := inheritable(judgments); len(want) > 0 || (record && recordable(judgments)) {
		if st.template == nil || st.stale(want) {
			st = h.standingOf(ctx, req, w, want)
		}
		grandfather(judgments, st)
	}
	out := decide(judgments)
	out.warnings = append(out.warnings, expiringWarnings(judgments, now)...)
	if record {
		for _, d := range out.decisions(w, st) {
			h.opts.Recorder.Record(ctx, d)
		}
	}
	// Refusals and warnings are logged; clean admissions, the bulk of the
	// traffic, only at V(1): Events and metrics already count them.
	if out.denied != "" || len(out.warnings) > 0 {
		log.Info("judged", "kind", gk.Kind, "images", len(imgs), "policies", len(policies), "denied", out.denied != "", "warnings", len(out.warnings))
	} else if v := log.V(1); v.Enabled() {
		v.Info("judged", "kind", gk.Kind, "images", len(imgs), "policies", len(policies))
	}
	if out.denied != "" {
		return admission.Denied(out.denied).WithWarnings(out.warnings...)
	}
	return admission.Allowed("").WithWarnings(out.warnings...)
}

// decode decodes an object and checks it is of the kind the request says.
func (h *Handler) decode(raw []byte, kind metav1.GroupVersionKind) (*Workload, error) {
	gk := schema.GroupKind{Group: kind.Group, Kind: kind.Kind}
	w, err := h.decoder.DecodeAs(raw, schema.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind})
	if err != nil {
		return nil, err
	}
	if w.Kind.GroupKind() != gk {
		return nil, fmt.Errorf("object is a %s, the request says %s", w.Kind.GroupKind(), gk)
	}
	return w, nil
}

// policiesFor returns the live policies whose namespaceSelector matches
// the namespace, compiled, sorted by name.
func (h *Handler) policiesFor(ctx context.Context, namespace string) ([]*compiledPolicy, error) {
	var list v1alpha1.SlimImagePolicyList
	if err := h.opts.Reader.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	compiled := h.policies.compile(ctx, list.Items)
	if len(compiled) == 0 {
		return nil, nil
	}
	nsLabels, err := namespaceLabels(ctx, h.opts.Reader, namespace)
	if err != nil {
		return nil, err
	}
	var out []*compiledPolicy
	for _, c := range compiled {
		if c.object.DeletionTimestamp == nil && c.compiled.SelectsNamespace(nsLabels) {
			out = append(out, c)
		}
	}
	return out, nil
}

// namespaceLabels returns a namespace's labels; for one the cache does
// not have (yet), the name label the API server would give it.
func namespaceLabels(ctx context.Context, r client.Reader, namespace string) (map[string]string, error) {
	var ns corev1.Namespace
	switch err := r.Get(ctx, types.NamespacedName{Name: namespace}, &ns); {
	case err == nil:
		return ns.Labels, nil
	case apierrors.IsNotFound(err):
		return map[string]string{corev1.LabelMetadataName: namespace}, nil
	default:
		return nil, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
}

// judgment is what one policy made of one image.
type judgment struct {
	image   Image
	policy  *v1alpha1.SlimImagePolicy
	results []policy.Result
	// failure is set when the image could not be inspected.
	failure *failure
	// grandfathered is set when the object inherits its owner's standing
	// under this policy (see standing.go): its findings are recorded and
	// neither deny nor warn.
	grandfathered bool
	// gate is the policy's spec.exceptions; waivers the exceptions that
	// waived findings of results.
	gate    *exception.Gate
	waivers []*exception.Exception
}

type failure struct {
	reason, detail string
	invalid        bool
}

// judge inspects the images, once per distinct reference and egress
// rules, and applies each policy to each image it does not exclude.
//
// The request chooses its images, so what they do to the review's budget
// is its doing; a registry's availability is not. The rule:
//
//   - a request over the bounds (Options.MaxImages distinct images,
//     Options.MaxRegistries registries) is a violation for every policy
//     (inspection.invalid), and nothing is fetched;
//   - inspections share the budget fairly across registries (schedule),
//     so an image is starved only by the request's own images on the same
//     registry: an image whose inspection never started before the budget
//     ran out is a violation (inspection.invalid, ReasonBudgetExhausted);
//   - an image whose facts arrived but whose evaluation had not ended
//     when the budget ran out is held up by its own configuration, which
//     its author writes: a violation (inspection.invalid,
//     policy.ReasonEvaluationDeadline), as a cut evaluation is;
//   - an inspection that started and got no answer in its share of the
//     budget met a registry that did not answer, which is availability:
//     inspection.failed, as the policy's onInspectionError says. A
//     registry policies allow is theirs to trust; onInspectionError Deny
//     is the setting for those that do not.
//
// With recheck every tag is resolved anew (registry.Request.Revalidate).
//
// Evaluation runs as each answer arrives and stops at the deadline too
// ((*policy.Compiled).Evaluate), so the review answers in time whatever the
// images' configs hold.
func (h *Handler) judge(ctx context.Context, namespace string, spec *corev1.PodSpec, imgs []Image, policies []*compiledPolicy, recheck bool) []judgment {
	type pending struct {
		fetch  *fetch
		policy int // index in fetch.policies
		j      judgment
	}
	judged := make([][]*compiledPolicy, len(imgs)) // per image, the policies that judge it
	for i, img := range imgs {
		for _, p := range policies {
			if !p.excludes(img) {
				judged[i] = append(judged[i], p)
			}
		}
	}
	over, parsed := h.overBounds(imgs, judged)
	if over != nil {
		return over.judgments(imgs, judged)
	}
	todo := make([]pending, 0, len(imgs)*len(policies))
	byKey := make(map[fetchKey]*fetch, len(imgs))
	var fetches []*fetch
	for i, img := range imgs {
		for _, p := range judged[i] {
			key := fetchKey{reference: img.Reference, rules: p.rules}
			f := byKey[key]
			if f == nil {
				r := p.request
				r.Reference, r.Revalidate, r.Parsed = img.Reference, recheck, parsed[img.Reference]
				f = &fetch{req: r, host: registryOf(r.Parsed)}
				byKey[key] = f
				fetches = append(fetches, f)
			}
			at := slices.Index(f.policies, p)
			if at < 0 {
				at = len(f.policies)
				f.policies = append(f.policies, p)
			}
			todo = append(todo, pending{fetch: f, policy: at, j: judgment{image: img, policy: p.object, gate: &p.gate}})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	keychain, scope := h.keychain(ctx, namespace, spec)
	cached, _ := h.opts.Inspector.(CachedInspector)
	queued := make([]*fetch, 0, len(fetches))
	for _, f := range fetches {
		f.req.Keychain, f.req.CredentialScope = keychain, scope
		// Answers already in memory need no goroutine: on a warm review
		// starting them cost more than the rest of the inspection.
		if cached != nil {
			if ins, ok := cached.InspectCached(f.req); ok && ins != nil && len(ins.Images) > 0 {
				f.started, f.answered, f.out = true, true, h.evaluateAll(ctx, f, ins)
				continue
			}
		}
		queued = append(queued, f)
	}
	schedule(ctx, queued, h.opts.Concurrency, h.inspect)
	started := 0
	for _, f := range queued {
		if f.started {
			started++
		}
	}
	starved := notInspected(ReasonBudgetExhausted, fmt.Sprintf("the review's time ran out before this image's turn (%d of %d inspections started)", started, len(queued)))
	out := make([]judgment, 0, len(todo))
	for _, t := range todo {
		j := t.j
		j.results, j.failure = resultsOf(ctx, t.fetch, t.policy, &j.policy.Spec, j.image.Reference, starved)
		out = append(out, j)
	}
	return out
}

// resultsOf is what the policy at index i of a fetch makes of its image,
// by how far the fetch got (see judge): starved is the message for an
// image whose inspection never started. failure is set for an
// availability failure.
func resultsOf(ctx context.Context, f *fetch, i int, spec *v1alpha1.SlimImagePolicySpec, ref, starved string) ([]policy.Result, *failure) {
	switch {
	case !f.started:
		return []policy.Result{refused(spec, ref, ReasonBudgetExhausted, starved,
			"name fewer images per object, or images on registries that answer in time")}, nil
	case !f.answered && f.fetched.Load():
		return []policy.Result{refused(spec, ref, policy.ReasonEvaluationDeadline,
			"Image not judged in time: its history was still being analysed at the review's deadline",
			"build with fewer and shorter steps (a multi-stage build keeps the build steps out of the final image's history)")}, nil
	case !f.answered || f.out.err != nil:
		err := f.out.err
		if !f.answered {
			err = &registry.InspectionError{Reference: ref, Reason: registry.ReasonTimeout, Err: errors.New("no answer in time")}
		}
		fl := failureOf(ctx, err)
		return []policy.Result{policy.InspectionFailed(spec, ref, policy.Failure{Reason: fl.reason, Detail: fl.detail, Invalid: fl.invalid})}, &fl
	default:
		return f.out.results[i], nil
	}
}

// inspect fetches one image's facts and evaluates them under each policy
// of the fetch; it runs on its own goroutine (see schedule).
func (h *Handler) inspect(ctx context.Context, f *fetch) found {
	ins, err := h.opts.Inspector.Inspect(ctx, f.req)
	if err == nil && (ins == nil || len(ins.Images) == 0) {
		err = &registry.InspectionError{Reference: f.req.Reference, Reason: registry.ReasonInvalid, Err: errors.New("no image for the requested platforms")}
	}
	if err != nil {
		return found{err: err}
	}
	f.fetched.Store(true)
	return h.evaluateAll(ctx, f, ins)
}

// evaluateAll evaluates every image of an inspection under each policy of
// the fetch.
func (h *Handler) evaluateAll(ctx context.Context, f *fetch, ins *registry.Inspection) found {
	out := found{results: make([][]policy.Result, len(f.policies))}
	for i, p := range f.policies {
		out.results[i] = make([]policy.Result, 0, len(ins.Images))
		for _, facts := range ins.Images {
			out.results[i] = append(out.results[i], h.evaluate(ctx, p, facts))
		}
	}
	return out
}

// fetchKey names what a request may fetch: the reference, and the egress
// rules and platforms of the policy (rulesKey). Requests with equal keys
// are inspected once per review.
type fetchKey struct{ reference, rules string }

// keychain returns the pull-secret credentials of the spec, or anonymous
// when none are configured or they cannot be read.
func (h *Handler) keychain(ctx context.Context, namespace string, spec *corev1.PodSpec) (authn.Keychain, string) {
	if h.opts.Keychain == nil || spec == nil {
		return nil, ""
	}
	secrets := make([]string, 0, len(spec.ImagePullSecrets))
	for _, s := range spec.ImagePullSecrets {
		secrets = append(secrets, s.Name)
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	kc, scope, err := h.opts.Keychain(ctx, namespace, sa, secrets)
	if err != nil {
		logf.FromContext(ctx).Info("pull secrets unavailable; pulling anonymously", "error", err.Error())
		return nil, ""
	}
	return kc, scope
}

// failureOf classifies an inspection error (a spent admission budget is a
// timeout whatever the transport said) and logs it as every other surface
// words it.
func failureOf(ctx context.Context, err error) failure {
	f := inspection.Classify(err, errors.Is(ctx.Err(), context.DeadlineExceeded))
	kv := []any{"failure", f.String()}
	if ie, ok := registry.AsInspectionError(err); ok {
		kv = append([]any{"image", ie.Reference}, kv...)
	}
	logf.FromContext(ctx).V(1).Info("image not inspected", kv...)
	return failure{reason: f.Reason, detail: f.Detail, invalid: f.Invalid}
}

func isTrue(b *bool) bool { return b != nil && *b }
