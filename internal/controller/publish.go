package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// +kubebuilder:rbac:groups="",namespace=slimgate-system,resources=configmaps,verbs=get;list;watch;create;patch;delete

// Every replica publishes the Pod reviews of its ReviewLog in a ConfigMap
// of the release namespace, so that each replica can tell a Pod another
// one reviewed from a Pod none did: the API server sends each review to
// one replica only.
const (
	// ReviewsLabel (value "true") marks the ConfigMaps of published
	// reviews; the webhook's cache holds only those.
	ReviewsLabel = "slimgate.dev/reviews"
	// ReviewsPrefix starts their names.
	ReviewsPrefix = "slimgate-reviews-"

	// annotationSince: the record holds every review of a Pod created
	// after this time (RFC 3339); annotationTruncated: "true" when that
	// time moved forward because reviews were left out (the record's
	// bound), not because the replica started then.
	annotationSince     = "slimgate.dev/reviews-since"
	annotationTruncated = "slimgate.dev/reviews-truncated"
	// annotationUntil: the record held every review made before this
	// time when it was written.
	annotationUntil = "slimgate.dev/reviews-until"
	// chunkPrefix starts the binaryData keys: "t" and the Unix time in
	// milliseconds at which the chunk's reviews had all been made; the
	// value is their uidKeys, end to end.
	chunkPrefix = "t"
)

// Defaults of the review records.
const (
	// DefaultPublishInterval is how often a replica publishes the reviews
	// it made since the last time.
	DefaultPublishInterval = 2 * time.Second
	// DefaultReviewWindow is how long reviews stay published: a Pod is
	// judged reviewed or not within it.
	DefaultReviewWindow = 10 * time.Minute
	// DefaultMaxPublished bounds the reviews one record holds (12 bytes
	// each).
	DefaultMaxPublished = 16384
)

// ReviewPublisher writes its ReviewLog's reviews to the ConfigMap Name in
// Namespace every Interval (when there are new ones, or a heartbeat a
// quarter Window after the last write), keeps them for Window, at most
// MaxPublished, and deletes other replicas' records that have not been
// written for a Window. Its Start runs until its context ends, then
// writes a last time.
type ReviewPublisher struct {
	Log *ReviewLog
	// Client writes the record; Reader lists the records (the cache).
	Client client.Client
	Reader client.Reader
	// Namespace is the release namespace; Name the record's name
	// (ReviewsPrefix and a name unique to this process).
	Namespace, Name string
	// Interval, Window and MaxPublished: 0 takes the defaults.
	Interval     time.Duration
	Window       time.Duration
	MaxPublished int

	chunks    []chunk
	total     int
	removed   []string // chunk keys published, then pruned
	since     time.Time
	truncated bool
	created   bool
	written   time.Time
	swept     time.Time
}

type chunk struct {
	key       string
	keys      []uidKey
	published bool
}

func (p *ReviewPublisher) defaults() {
	if p.Interval <= 0 {
		p.Interval = DefaultPublishInterval
	}
	if p.Window <= 0 {
		p.Window = DefaultReviewWindow
	}
	if p.MaxPublished <= 0 {
		p.MaxPublished = DefaultMaxPublished
	}
	if p.since.IsZero() {
		p.since = p.Log.start
	}
}

// Start publishes until ctx ends, then once more (for a few seconds at
// most).
func (p *ReviewPublisher) Start(ctx context.Context) error {
	p.defaults()
	tick := time.NewTicker(p.Interval)
	defer tick.Stop()
	log := logf.FromContext(ctx).WithValues("record", p.Namespace+"/"+p.Name)
	for {
		select {
		case now := <-tick.C:
			if err := p.publish(ctx, now); err != nil {
				log.Info("reviews not published; trying again", "error", err.Error())
			}
			p.sweep(ctx, now)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.publish(last, time.Now()); err != nil {
				log.Info("last reviews not published", "error", err.Error())
			}
			return nil
		}
	}
}

// publish takes the log's new reviews into a chunk, prunes what is older
// than the window or over the bound, and writes the record when it
// changed.
func (p *ReviewPublisher) publish(ctx context.Context, now time.Time) error {
	p.defaults()
	keys, lost := p.Log.takePending()
	if !lost.IsZero() {
		p.moveSince(lost)
	}
	changed := false
	if len(keys) > 0 {
		ms := now.UnixMilli()
		if n := len(p.chunks); n > 0 {
			ms = max(ms, chunkTime(p.chunks[n-1].key).UnixMilli()+1) // one key per chunk
		}
		p.chunks = append(p.chunks, chunk{key: chunkPrefix + strconv.FormatInt(ms, 10), keys: keys})
		p.total += len(keys)
		changed = true
	}
	for len(p.chunks) > 0 && (p.total > p.MaxPublished || chunkTime(p.chunks[0].key).Before(now.Add(-p.Window))) {
		c := p.chunks[0]
		if p.total > p.MaxPublished {
			p.moveSince(chunkTime(c.key))
		}
		if c.published {
			p.removed = append(p.removed, c.key)
		}
		p.total -= len(c.keys)
		p.chunks = p.chunks[1:]
		changed = true
	}
	if !changed && p.created && now.Sub(p.written) < p.Window/4 {
		return nil
	}
	if err := p.write(ctx, now); err != nil {
		return err
	}
	for i := range p.chunks {
		p.chunks[i].published = true
	}
	p.removed, p.written = nil, now
	return nil
}

func (p *ReviewPublisher) moveSince(t time.Time) {
	if t.After(p.since) {
		p.since, p.truncated = t, true
	}
}

// write creates the record, or patches in what changed.
func (p *ReviewPublisher) write(ctx context.Context, now time.Time) error {
	annotations := map[string]string{
		annotationSince:     p.since.UTC().Format(time.RFC3339Nano),
		annotationUntil:     now.UTC().Format(time.RFC3339Nano),
		annotationTruncated: strconv.FormatBool(p.truncated),
	}
	if p.created {
		err := p.patch(ctx, annotations, false)
		if !apierrors.IsNotFound(err) {
			return err
		}
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{ReviewsLabel: "true"}, Annotations: annotations},
		BinaryData: map[string][]byte{},
	}
	for _, c := range p.chunks {
		cm.BinaryData[c.key] = joinKeys(c.keys)
	}
	err := p.Client.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) { // created by a write whose answer was lost
		err = p.patch(ctx, annotations, true)
	}
	if err != nil {
		return fmt.Errorf("writing %s/%s: %w", p.Namespace, p.Name, err)
	}
	p.created = true
	return nil
}

// patch merges the annotations and the chunks not yet published (all,
// with whole) into the record, and removes the chunks pruned.
func (p *ReviewPublisher) patch(ctx context.Context, annotations map[string]string, whole bool) error {
	data := map[string]any{}
	for _, c := range p.chunks {
		if whole || !c.published {
			data[c.key] = joinKeys(c.keys)
		}
	}
	for _, k := range p.removed {
		data[k] = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}, "binaryData": data})
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
	return p.Client.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch))
}

// sweep deletes, once a minute, the records of other replicas not written
// for a window: they speak for no Pod that is still judged.
func (p *ReviewPublisher) sweep(ctx context.Context, now time.Time) {
	if now.Sub(p.swept) < time.Minute {
		return
	}
	p.swept = now
	var list corev1.ConfigMapList
	if err := p.Reader.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{ReviewsLabel: "true"}); err != nil {
		return
	}
	for i := range list.Items {
		cm := &list.Items[i]
		r, err := parseRecord(cm)
		if cm.Name == p.Name || (err == nil && !r.until.Before(now.Add(-p.Window))) {
			continue
		}
		if err := p.Client.Delete(ctx, cm, client.Preconditions{ResourceVersion: &cm.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			logf.FromContext(ctx).V(1).Info("stale review record not deleted", "record", cm.Name, "error", err.Error())
		}
	}
}

func joinKeys(keys []uidKey) []byte {
	out := make([]byte, 0, len(keys)*len(uidKey{}))
	for _, k := range keys {
		out = append(out, k[:]...)
	}
	return out
}

// chunkTime is the time a chunk key names; zero for a key that names none.
func chunkTime(key string) time.Time {
	ms, err := strconv.ParseInt(strings.TrimPrefix(key, chunkPrefix), 10, 64)
	if err != nil || !strings.HasPrefix(key, chunkPrefix) {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// record is one replica's published reviews.
type record struct {
	since, until time.Time
	truncated    bool
	chunks       map[time.Time][]byte
}

// parseRecord reads a published record.
func parseRecord(cm *corev1.ConfigMap) (record, error) {
	var r record
	var err error
	if r.since, err = time.Parse(time.RFC3339Nano, cm.Annotations[annotationSince]); err != nil {
		return r, fmt.Errorf("record %s: %s: %w", cm.Name, annotationSince, err)
	}
	if r.until, err = time.Parse(time.RFC3339Nano, cm.Annotations[annotationUntil]); err != nil {
		return r, fmt.Errorf("record %s: %s: %w", cm.Name, annotationUntil, err)
	}
	r.truncated = cm.Annotations[annotationTruncated] == "true"
	r.chunks = make(map[time.Time][]byte, len(cm.BinaryData))
	for k, v := range cm.BinaryData {
		t := chunkTime(k)
		if t.IsZero() || len(v)%len(uidKey{}) != 0 {
			return r, errors.New("record " + cm.Name + ": malformed chunk " + k)
		}
		r.chunks[t] = v
	}
	return r, nil
}

// has reports whether the record holds k among the reviews published in
// chunks of after or later.
func (r record) has(k uidKey, after time.Time) bool {
	for t, data := range r.chunks {
		if t.Before(after) {
			continue
		}
		for i := 0; i+len(k) <= len(data); i += len(k) {
			if bytes.Equal(data[i:i+len(k)], k[:]) {
				return true
			}
		}
	}
	return false
}
