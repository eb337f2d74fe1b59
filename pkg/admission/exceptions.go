package admission

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/policy"
)

// +kubebuilder:rbac:groups=slimgate.dev,resources=slimimageexceptions,verbs=get;list;watch

// exceptionKey names one generation of an exception object.
type exceptionKey struct {
	namespace, name string
	uid             types.UID
	resourceVersion string
}

// exceptionsIn returns the exceptions of a namespace that apply at now:
// at most exception.MaxPerNamespace, the first by name, picked from the
// objects (exception.Select) and only then compiled, once per object
// generation. They are read from the Reader (the manager's cache)
// at every review, so an exception applies as soon as the cache has it
// and stops at its expires, whatever the cache holds. An error reading
// them is logged and the review goes on without exceptions: findings
// then stand.
func (h *Handler) exceptionsIn(ctx context.Context, namespace string, now time.Time) []*exception.Exception {
	var list v1alpha1.SlimImageExceptionList
	if err := h.opts.Reader.List(ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Info("exceptions not read; none applies", "namespace", namespace, "error", err.Error())
		return nil
	}
	objects := make([]*v1alpha1.SlimImageException, len(list.Items))
	for i := range list.Items {
		objects[i] = &list.Items[i]
	}
	selected, left := exception.Select(objects, now)
	if left > 0 {
		logf.FromContext(ctx).Info("too many exceptions in the namespace; the first by name apply",
			"namespace", namespace, "considered", exception.MaxPerNamespace, "left out", left)
	}
	active := make([]*exception.Exception, 0, len(selected))
	for _, e := range selected {
		key := exceptionKey{namespace: e.Namespace, name: e.Name, uid: e.UID, resourceVersion: e.ResourceVersion}
		c, ok := h.exceptions.get(key)
		if !ok {
			c = exception.Compile(e)
			if e.ResourceVersion != "" {
				h.exceptions.put(key, c, exceptionSize(e))
			}
		}
		active = append(active, c)
	}
	return active
}

// exceptionSize estimates the bytes a compiled exception holds: its
// strings and a fixed cost.
func exceptionSize(e *v1alpha1.SlimImageException) int64 {
	n := 512 + len(e.Name) + len(e.Namespace) + len(e.Spec.Reason)
	for _, list := range [][]string{e.Spec.Policies, e.Spec.Rules, e.Spec.Images, e.Spec.Digests, e.Spec.Containers} {
		for _, s := range list {
			n += 16 + len(s)
		}
	}
	for _, w := range e.Spec.Workloads {
		n += 32 + len(w.Kind) + len(w.Name)
	}
	return int64(n)
}

// waive marks the findings that the namespace's exceptions waive (see
// exception.Waive), for the policies that honour them. written maps an
// image judged in the stead of the one the workload writes to the one
// written, which exceptions match; nil when each is judged as written.
func (h *Handler) waive(ctx context.Context, namespace string, w *Workload, js []judgment, written map[Image]string, now time.Time) ([]judgment, error) {
	active := h.exceptionsIn(ctx, namespace, now)
	if len(active) == 0 {
		return js, nil
	}
	nsLabels, err := namespaceLabels(ctx, h.opts.Reader, namespace)
	if err != nil {
		return nil, err
	}
	workloads := exception.Workloads(w.Kind.Kind, w.Object)
	honoured := map[*v1alpha1.SlimImagePolicy][]*exception.Exception{}
	for i := range js {
		j := &js[i]
		if j.gate == nil {
			continue
		}
		list, ok := honoured[j.policy]
		if !ok {
			list = j.gate.Honours(nsLabels, active)
			honoured[j.policy] = list
		}
		s := exception.Subject{Policy: j.policy.Name, Image: cmp.Or(written[j.image], j.image.Reference), Workloads: workloads, Container: j.image.Container}
		results := make([]policy.Result, len(j.results))
		for k, r := range j.results {
			var used []*exception.Exception
			results[k], used = exception.Waive(r, list, s)
			for _, e := range used {
				if !slices.Contains(j.waivers, e) {
					j.waivers = append(j.waivers, e)
				}
			}
		}
		j.results = results
	}
	return js, nil
}

// excepted returns the findings of a judgment that exceptions waive,
// without repeats across platforms.
func (j judgment) excepted() []policy.Finding {
	seen := map[string]bool{}
	var out []policy.Finding
	for _, r := range j.results {
		for _, f := range r.Findings {
			if f.Excepted == nil || seen[f.Rule] {
				continue
			}
			seen[f.Rule] = true
			out = append(out, f)
		}
	}
	return out
}

// waivedLines says which exceptions waived what in a judgment, for the
// ImageExcepted Event:
//
//	[default] container "app" image ci:1: toolchain.go waived by SlimImageException ci-runner until 2025-07-01T00:00:00Z: the runner builds code
func waivedLines(j judgment) []string {
	byException := map[string][]string{}
	for _, f := range j.excepted() {
		byException[f.Excepted.Exception] = append(byException[f.Excepted.Exception], f.Rule)
	}
	var lines []string
	for _, e := range j.waivers {
		rules := byException[e.Name]
		if len(rules) == 0 {
			continue
		}
		lines = append(lines, j.subject()+": "+e.Waiver().Waives(rules))
	}
	return lines
}

// expiringWarnings are the admission warnings about the exceptions that
// waived something in this review and expire within
// exception.ExpiringWithin of now.
func expiringWarnings(js []judgment, now time.Time) []string {
	var seen []*exception.Exception
	var out []string
	for _, j := range js {
		for _, e := range j.waivers {
			if slices.Contains(seen, e) || !e.ExpiringAt(now) {
				continue
			}
			seen = append(seen, e)
			left := e.Expires.Sub(now).Round(time.Minute)
			out = append(out, policy.Truncate(fmt.Sprintf("[slimgate] exception %s expires in %s (%s): fix the image or renew it",
				policy.Truncate(e.Name, 40), left, e.Expires.UTC().Format(time.RFC3339)), MaxWarning-1))
		}
	}
	return out
}
