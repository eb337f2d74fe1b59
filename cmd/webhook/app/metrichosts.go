package app

import (
	"context"
	"fmt"
	"slices"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// policyHosts keeps the registry client's metric hosts (the values the
// registry label of slimgate_registry_requests_total may take besides
// well-known registries and "other") to the registries the policies name:
// their registries.allow and registries.insecure entries. The registry
// client ignores patterns among them, so no image reference chooses a
// label value.
type policyHosts struct {
	mu       sync.Mutex
	byPolicy map[string][]string
	set      func(hosts []string)
}

func (p *policyHosts) update(obj any) {
	pol, ok := obj.(*v1alpha1.SlimImagePolicy)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byPolicy[pol.Name] = slices.Concat(pol.Spec.Registries.Allow, pol.Spec.Registries.Insecure)
	p.publish()
}

func (p *policyHosts) remove(obj any) {
	if gone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = gone.Obj
	}
	pol, ok := obj.(*v1alpha1.SlimImagePolicy)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byPolicy, pol.Name)
	p.publish()
}

func (p *policyHosts) publish() {
	var all []string
	for _, hosts := range p.byPolicy {
		all = append(all, hosts...)
	}
	p.set(all)
}

// watchPolicyHosts calls set with the registries the policies name, from
// the manager's policy informer, whenever a policy changes.
func watchPolicyHosts(ctx context.Context, c cache.Cache, set func(hosts []string)) error {
	inf, err := c.GetInformer(ctx, &v1alpha1.SlimImagePolicy{}, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("watching policies: %w", err)
	}
	p := &policyHosts{byPolicy: map[string][]string{}, set: set}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    p.update,
		UpdateFunc: func(_, obj any) { p.update(obj) },
		DeleteFunc: p.remove,
	})
	if err != nil {
		return fmt.Errorf("watching policies: %w", err)
	}
	return nil
}
