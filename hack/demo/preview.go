package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/pkg/policy"
)

// dryRun is a change sent with dryRun=All, as kubectl --dry-run=server
// sends it: the admission webhooks run, nothing is stored.
type dryRun struct {
	// command is the kubectl command line it stands for; printed what
	// kubectl prints once the change is accepted.
	command, printed string
	// warnings are the admission warnings the API server returned.
	warnings []string
	// want names the workloads the warnings should name, as they name
	// them.
	want []string
}

// previews are the two ways of asking slimgate what Enforce would break.
type previews struct {
	label, enforce dryRun
}

// previewWait bounds the wait for the previews to name what the scan
// found: each policy's status.preview is written after the scan.
const previewWait = 20 * time.Second

// preview labels the audited namespace into the enforcing policy's
// selector, and switches the audit policy to Enforce, both in a
// server-side dry run, and collects the warnings. It retries each until
// the warnings name the workloads the default policy denies there (the
// preview follows the background scan), or previewWait passes (check
// then reports the difference).
func preview(ctx context.Context, c *cluster, rs []result) (*previews, error) {
	dry := client.NewDryRunClient(c.client)
	var denied []result // running in the audited namespace, denied by the default policy
	for _, r := range rs {
		if r.ns == nsAudit && !r.denied() && r.eval.Verdict == policy.VerdictDeny {
			denied = append(denied, r)
		}
	}
	p := &previews{
		label: dryRun{
			command: fmt.Sprintf("kubectl label namespace %s %s=true --dry-run=server", nsAudit, optLabel),
			printed: fmt.Sprintf("namespace/%s labeled (server dry run)", nsAudit),
		},
		enforce: dryRun{
			command: `kubectl patch sip cluster-audit --type merge -p '{"spec":{"mode":"Enforce"}}' --dry-run=server`,
			printed: "slimimagepolicy.slimgate.dev/cluster-audit patched (server dry run)",
		},
	}
	for _, r := range denied {
		// The namespace's warnings name kind/name, the policy's
		// namespace/name (it spans namespaces).
		p.label.want = append(p.label.want, r.kind+"/"+r.name)
		p.enforce.want = append(p.enforce.want, r.ns+"/"+r.name)
	}
	label := func() error {
		var ns corev1.Namespace
		if err := c.client.Get(ctx, client.ObjectKey{Name: nsAudit}, &ns); err != nil {
			return err
		}
		orig := ns.DeepCopy()
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[optLabel] = "true"
		return dry.Patch(ctx, &ns, client.MergeFrom(orig))
	}
	enforce := func() error {
		var sip v1alpha1.SlimImagePolicy
		if err := c.client.Get(ctx, client.ObjectKey{Name: "cluster-audit"}, &sip); err != nil {
			return err
		}
		orig := sip.DeepCopy()
		sip.Spec.Mode = v1alpha1.ModeEnforce
		return dry.Patch(ctx, &sip, client.MergeFrom(orig))
	}
	for _, step := range []struct {
		run func() error
		d   *dryRun
	}{{label, &p.label}, {enforce, &p.enforce}} {
		err := devcluster.Poll(ctx, previewWait, func() error {
			c.warnings.Take()
			if err := step.run(); err != nil {
				return fmt.Errorf("%w: %s: %w", devcluster.ErrGiveUp, step.d.command, err)
			}
			step.d.warnings = c.warnings.Take()
			if named := named(step.d.warnings); !slices.Equal(named, sorted(step.d.want)) {
				return fmt.Errorf("%s: the warnings name %q, want %q", step.d.command, named, step.d.want)
			}
			return nil
		})
		if errors.Is(err, devcluster.ErrGiveUp) || ctx.Err() != nil {
			return nil, err
		}
	}
	return p, nil
}

// named returns the workloads a preview's warnings name ("  shop/api
// (toolchain.go, 612 MB)"), sorted.
func named(warnings []string) []string {
	var out []string
	for _, w := range warnings {
		if item, ok := strings.CutPrefix(w, "  "); ok && !strings.HasPrefix(item, "and ") {
			name, _, _ := strings.Cut(item, " (")
			out = append(out, name)
		}
	}
	return sorted(out)
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// plural is noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
