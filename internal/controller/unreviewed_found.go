package controller

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// maxFoundUnreviewed bounds the Pods an UnreviewedPodReconciler remembers
// having found unreviewed; beyond it the oldest are forgotten.
const maxFoundUnreviewed = 100000

// foundUnreviewed remembers the Pods found created without a review, for
// the background scan's Reports.
type foundUnreviewed struct {
	mu    sync.Mutex
	set   map[uidKey]struct{}
	order []uidKey
}

func (f *foundUnreviewed) add(uid types.UID) {
	k := keyOf(uid)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set == nil {
		f.set = map[uidKey]struct{}{}
	}
	if _, ok := f.set[k]; ok {
		return
	}
	if len(f.order) >= maxFoundUnreviewed {
		delete(f.set, f.order[0])
		f.order = f.order[1:]
	}
	f.set[k] = struct{}{}
	f.order = append(f.order, k)
}

func (f *foundUnreviewed) has(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.set[keyOf(uid)]
	return ok
}

// WasUnreviewed reports whether this replica found the Pod with uid
// created without a review (every replica judges every Pod it notices, so
// the scanning replica knows of the Pods created since it started).
func (r *UnreviewedPodReconciler) WasUnreviewed(uid types.UID) bool { return r.found.has(uid) }
