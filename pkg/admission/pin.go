package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
)

// Time of check and time of use: the webhook judges what a tag names now,
// the kubelet pulls what it names later. Two answers: a Pod CREATE
// resolves every tag anew (rechecksTags), and, optionally, the Pinner
// writes the digest it resolved into the Pod, so that the validating
// review that follows judges, and the kubelet pulls, that digest.

// rechecksTags reports whether a review resolves every tag anew rather
// than trusting the tag cache: a Pod CREATE, the review closest to the
// kubelet's pull. UPDATEs and the workload kinds keep the cache; the Pods
// those workloads create are checked when they are created.
func rechecksTags(req admission.Request) bool {
	return req.Operation == admissionv1.Create && req.Kind.Group == "" && req.Kind.Kind == "Pod" && req.SubResource == ""
}

// maxPins bounds the distinct references one review pins: a Pod is
// written by its author, and the mutating webhook sees it before the API
// server validates it.
const maxPins = 64

// Pinner is the mutating admission handler that pins the image tags of
// Pods to digests: "app:1.2" becomes "app:1.2@sha256:…", the digest the
// tag names now. It runs before the validating webhooks, so the
// validating review judges the pinned reference, and the kubelet pulls
// the image that was judged even when the tag moves later.
//
// It handles Pod CREATE (containers, init containers, image volumes) and
// the pods/ephemeralcontainers subresource (the ephemeral containers it
// adds), never workload kinds: a Deployment's template stays as written,
// so GitOps tools see no drift. A tag is resolved as the validating
// review would inspect it, through the same Inspector, with the Pod's
// pull-secret credentials and the egress rules of the first policy (by
// name) that judges the image; the facts it reads are cached for the
// validating review. References that already carry a digest, images no
// policy judges (or that a policy excludes by a glob the pinned reference
// would no longer match), and tags that cannot be resolved are left as
// written: the validating webhook then decides about them as it would
// without pinning. So are the tags beyond the first maxPins distinct ones,
// and those not resolved before the review's deadline.
type Pinner struct {
	h *Handler
}

// NewPinner returns a Pinner that shares h's policies, inspector and
// credentials.
func NewPinner(h *Handler) *Pinner { return &Pinner{h: h} }

// Handle implements admission.Handler.
func (p *Pinner) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Allowed(fmt.Sprintf("slimgate pins Pods only, not %s", req.Kind.Kind))
	}
	ephemeral := req.SubResource == "ephemeralcontainers" && req.Operation == admissionv1.Update
	if !ephemeral && (req.SubResource != "" || req.Operation != admissionv1.Create) {
		return admission.Allowed("slimgate pins images on Pod CREATE and on new ephemeral containers")
	}
	w, err := p.h.decode(req.Object.Raw, req.Kind)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	imgs := Images(w.Spec, w.Path)
	if ephemeral {
		old, err := p.h.decode(req.OldObject.Raw, req.Kind)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("old object: %w", err))
		}
		imgs = addedEphemeral(imgs, Images(old.Spec, old.Path))
	}
	imgs = tagged(imgs)
	if len(imgs) == 0 {
		return admission.Allowed("no tag to pin")
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = w.Object.GetNamespace()
	}
	policies, err := p.h.policiesFor(ctx, namespace)
	if err != nil {
		// Not pinning leaves the decision to the validating webhook.
		logf.FromContext(ctx).Error(err, "reading policies; pinning nothing")
		return admission.Allowed("policies unavailable: nothing pinned")
	}
	requests := map[fetchKey]registry.Request{}
	keys := make([]fetchKey, len(imgs))
	for i, img := range imgs {
		if len(requests) == maxPins {
			break // the rest stay as written
		}
		for _, cp := range policies {
			if cp.excludes(img) {
				continue
			}
			keys[i] = fetchKey{reference: img.Reference, rules: cp.rules}
			r := cp.request
			r.Reference, r.Revalidate = img.Reference, true
			requests[keys[i]] = r
			break
		}
	}
	if len(requests) == 0 {
		return admission.Allowed("no policy judges these images: nothing pinned")
	}
	digests := p.resolve(ctx, namespace, w, requests)
	var patches []jsonpatch.JsonPatchOperation
	for i, img := range imgs {
		d, ok := digests[keys[i]]
		if !ok {
			continue
		}
		pinned := img
		pinned.Reference = img.Reference + "@" + d
		if excludedOnlyAsWritten(policies, img, pinned) {
			continue
		}
		patches = append(patches, jsonpatch.NewOperation("replace", jsonPointer(img.Path), pinned.Reference))
	}
	if len(patches) == 0 {
		return admission.Allowed("no tag resolved: nothing pinned")
	}
	if v := logf.FromContext(ctx).V(1); v.Enabled() {
		v.Info("pinned", "pinned", len(patches), "tags", len(imgs))
	}
	return admission.Patched("", patches...)
}

// resolve inspects each request, at most Concurrency at once, and returns
// the digest each resolved to. Failures are left out: those references
// stay as written.
func (p *Pinner) resolve(ctx context.Context, namespace string, w *Workload, requests map[fetchKey]registry.Request) map[fetchKey]string {
	keychain, scope := p.h.keychain(ctx, namespace, w.Spec)
	var mu sync.Mutex
	out := make(map[fetchKey]string, len(requests))
	var g errgroup.Group
	g.SetLimit(p.h.opts.Concurrency)
	for key, r := range requests {
		r.Keychain, r.CredentialScope = keychain, scope
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil // out of time: the rest stay as written
			}
			ins, err := p.h.opts.Inspector.Inspect(ctx, r)
			if err == nil && (ins == nil || !isDigest(ins.Digest)) {
				err = errors.New("the registry named no digest")
			}
			if err != nil {
				if v := logf.FromContext(ctx).V(1); v.Enabled() {
					v.Info("tag not pinned; the validating webhook decides", "image", r.Reference, "error", err.Error())
				}
				return nil
			}
			mu.Lock()
			out[key] = ins.Digest
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // the goroutines never fail; a failure leaves its reference as written
	return out
}

// excludedOnlyAsWritten reports whether a policy excludes the image as
// written but would judge it pinned (an exclude.images glob that names the
// tag exactly): then the image stays as written, so that the policy keeps
// leaving it alone.
func excludedOnlyAsWritten(policies []*compiledPolicy, written, pinned Image) bool {
	for _, cp := range policies {
		if cp.excludes(written) && !cp.excludes(pinned) {
			return true
		}
	}
	return false
}

// isDigest reports whether d is a digest ("sha256:" and its hex).
func isDigest(d string) bool {
	_, err := v1.NewHash(d)
	return err == nil
}

// tagged keeps the images named without a digest.
func tagged(imgs []Image) []Image {
	var out []Image
	for _, img := range imgs {
		if img.Reference != "" && !policy.Pinned(img.Reference) {
			out = append(out, img)
		}
	}
	return out
}

// addedEphemeral keeps the ephemeral containers of current that old does
// not have: the only part of a Pod the ephemeralcontainers subresource
// may change, and ephemeral containers cannot be changed once added.
func addedEphemeral(current, old []Image) []Image {
	had := map[string]bool{}
	for _, o := range old {
		if o.Source == sourceEphemeralContainer {
			had[o.Container] = true
		}
	}
	var out []Image
	for _, c := range current {
		if c.Source == sourceEphemeralContainer && !had[c.Container] {
			out = append(out, c)
		}
	}
	return out
}

// jsonPointer turns an Image's field path ("spec.containers[0].image")
// into a JSON pointer ("/spec/containers/0/image"). Field names hold
// neither "~" nor "/", so nothing needs escaping.
func jsonPointer(path string) string {
	return "/" + strings.NewReplacer("[", "/", "]", "", ".", "/").Replace(path)
}
