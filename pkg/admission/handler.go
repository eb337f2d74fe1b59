package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/errgroup"
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

// CachedInspector is an Inspector that can also answer from memory alone
// (registry.Remote is one); ok false means Inspect must be called.
type CachedInspector interface {
	InspectCached(req registry.Request) (insp *registry.Inspection, ok bool)
}

// Options configures a Handler.
type Options struct {
	// Reader reads SlimImagePolicies and Namespaces (the manager's cache).
	Reader client.Reader
	// Inspector fetches image facts.
	Inspector registry.Inspector
	// Keychain supplies pull-secret credentials; nil: anonymous pulls.
	Keychain KeychainFunc
	// Recorder records decisions; nil: nothing is recorded.
	Recorder DecisionRecorder
	// Concurrency bounds the registry inspections of one request; 0: 16.
	Concurrency int
}

// Handler is the validating admission handler for Pods, the workload kinds
// that carry a Pod template, and the pods/ephemeralcontainers subresource.
type Handler struct {
	opts     Options
	decoder  *Decoder
	policies policySet
	evals    memo[evalKey, policy.Result]
}

// NewHandler returns a Handler.
func NewHandler(o Options) (*Handler, error) {
	if o.Reader == nil || o.Inspector == nil {
		return nil, errors.New("admission handler needs a reader and an inspector")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	d, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	return &Handler{opts: o, decoder: d}, nil
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
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
	judgments := h.judge(ctx, namespace, w.Spec, imgs, policies)
	out := decide(judgments)
	if !isTrue(req.DryRun) && h.opts.Recorder != nil {
		for _, d := range out.decisions(w) {
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
	var nsLabels map[string]string
	var ns corev1.Namespace
	switch err := h.opts.Reader.Get(ctx, types.NamespacedName{Name: namespace}, &ns); {
	case err == nil:
		nsLabels = ns.Labels
	case apierrors.IsNotFound(err):
		nsLabels = map[string]string{corev1.LabelMetadataName: namespace}
	default:
		return nil, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	var out []*compiledPolicy
	for _, c := range compiled {
		if c.object.DeletionTimestamp == nil && c.compiled.SelectsNamespace(nsLabels) {
			out = append(out, c)
		}
	}
	return out, nil
}

// judgment is what one policy made of one image.
type judgment struct {
	image   Image
	policy  *v1alpha1.SlimImagePolicy
	results []policy.Result
	// failure is set when the image could not be inspected.
	failure *failure
}

type failure struct {
	reason, detail string
}

// judge inspects the images concurrently, once per distinct reference and
// egress rules, and applies each policy to each image it does not exclude.
func (h *Handler) judge(ctx context.Context, namespace string, spec *corev1.PodSpec, imgs []Image, policies []*compiledPolicy) []judgment {
	type pending struct {
		key    fetchKey
		policy *compiledPolicy
		j      judgment
	}
	todo := make([]pending, 0, len(imgs)*len(policies))
	requests := make(map[fetchKey]registry.Request, len(imgs))
	for _, img := range imgs {
		for _, p := range policies {
			if p.excludes(img) {
				continue
			}
			key := fetchKey{reference: img.Reference, rules: p.rules}
			if _, ok := requests[key]; !ok {
				r := p.request
				r.Reference = img.Reference
				requests[key] = r
			}
			todo = append(todo, pending{key: key, policy: p, j: judgment{image: img, policy: p.object}})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	keychain, scope := h.keychain(ctx, namespace, spec)
	type outcome struct {
		ins *registry.Inspection
		err error
	}
	var mu sync.Mutex
	outcomes := make(map[fetchKey]outcome, len(requests))
	cached, _ := h.opts.Inspector.(CachedInspector)
	var g errgroup.Group
	g.SetLimit(h.opts.Concurrency)
	for key, r := range requests {
		r.Keychain, r.CredentialScope = keychain, scope
		// Answers already in memory need no goroutine: on a warm review
		// starting them cost more than the rest of the inspection.
		if cached != nil {
			if ins, ok := cached.InspectCached(r); ok && ins != nil && len(ins.Images) > 0 {
				mu.Lock()
				outcomes[key] = outcome{ins, nil}
				mu.Unlock()
				continue
			}
		}
		g.Go(func() error {
			ins, err := h.opts.Inspector.Inspect(ctx, r)
			if err == nil && (ins == nil || len(ins.Images) == 0) {
				err = &registry.InspectionError{Reference: r.Reference, Reason: registry.ReasonInvalid, Err: errors.New("no image for the requested platforms")}
			}
			mu.Lock()
			outcomes[key] = outcome{ins, err}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // the goroutines never fail; errors are per image
	out := make([]judgment, 0, len(todo))
	for _, t := range todo {
		o := outcomes[t.key]
		j := t.j
		spec := &j.policy.Spec
		if o.err != nil {
			f := failureOf(ctx, o.err)
			j.failure = &f
			j.results = []policy.Result{policy.InspectionFailed(spec, j.image.Reference, f.reason, f.detail)}
		} else {
			j.results = make([]policy.Result, 0, len(o.ins.Images))
			for _, facts := range o.ins.Images {
				j.results = append(j.results, h.evaluate(ctx, t.policy, facts))
			}
		}
		out = append(out, j)
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
	return failure{reason: f.Reason, detail: f.Detail}
}

func isTrue(b *bool) bool { return b != nil && *b }
