package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// ReasonUnreviewed is the reason of the Events about a Pod created
// without a review (the webhook could not be reached and its
// failurePolicy Ignore let the API server admit it); their notes say what
// a review would have found.
const ReasonUnreviewed = "ImageUnreviewed"

// WriteOnce writes, at once, one Event about an image of an object that
// exists (regarding names it with its UID), related to the policy. The
// Event's name is derived from what it is about, so that every replica
// recording the same thing writes the same Event: WriteOnce reports
// whether this call created it, false when it already existed (another
// replica, or an earlier run, recorded it). It is for things that happen
// once, off the admission path; it does not count repeats.
func (r *Recorder) WriteOnce(ctx context.Context, regarding corev1.ObjectReference, p *v1alpha1.SlimImagePolicy, n ImageNote, action string) (bool, error) {
	if r.client == nil {
		return false, errors.New("no client to write events with")
	}
	now := time.Now()
	e := &entry{key: key{regarding: regarding, related: policyRef(p), image: n.Image, reason: n.Reason, action: action},
		note: n.Note, first: now, last: now, count: 1}
	ev := r.event(e, 1, now)
	ev.Name = onceName(e.key)
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	switch err := r.client.Create(ctx, ev); {
	case apierrors.IsAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("writing the %s event regarding %s/%s: %w", n.Reason, regarding.Namespace, regarding.Name, err)
	}
	return true, nil
}

// onceName names the Event about k: the regarding object's name and a
// hash of the rest, within the 253 bytes of a name.
func onceName(k key) string {
	h := sha256.New()
	for _, part := range []string{string(k.regarding.UID), k.regarding.Kind, k.regarding.Name, string(k.related.UID), k.related.Name, k.image, k.reason, k.action} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return withSuffix(k.regarding.Name, "."+hex.EncodeToString(h.Sum(nil))[:20])
}
