package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
)

// hostileHistory is n maximal history lines (64 KiB, the longest the
// analysis reads) of package installs: about 40 ms of analysis each.
func hostileHistory(n int) *image.Facts {
	line := "RUN /bin/sh -c " + strings.Repeat("apt-get install -y gcc make && ", (64<<10)/31)
	f := &image.Facts{Reference: "example.test/app:1", Digest: "sha256:" + strings.Repeat("cd", 32)}
	for i := range n {
		f.History = append(f.History, image.HistoryEntry{Index: i, CreatedBy: line, Layer: image.NoLayer})
	}
	return f
}

// stepCost is the longest of three evaluations of one maximal step.
func stepCost(t *testing.T, c *Compiled) time.Duration {
	t.Helper()
	one := hostileHistory(1)
	var worst time.Duration
	for range 3 {
		start := time.Now()
		c.Evaluate(t.Context(), one)
		worst = max(worst, time.Since(start))
	}
	return worst
}

// Evaluation stops at its context's end, before the next history step,
// and the result says so with a finding in the policy's mode: under
// Enforce a cut evaluation denies.
func TestEvaluateStopsAtContextEnd(t *testing.T) {
	f := hostileHistory(2000)
	for _, mode := range []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit} {
		t.Run(string(mode), func(t *testing.T) {
			spec := Default().Spec
			spec.Mode = mode
			c, err := Compile(&spec)
			if err != nil {
				t.Fatal(err)
			}
			// The evaluation checks its context between steps, so it may
			// overrun by the step in progress: the slack is measured, five
			// times one step's cost on this machine in this run (race
			// detector and load included), and at least 500 ms for the
			// scheduler of a loaded machine; all 2000 steps take hundreds
			// of times longer.
			const budget = 300 * time.Millisecond
			slack := max(500*time.Millisecond, 5*stepCost(t, c))
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			start := time.Now()
			res := c.Evaluate(ctx, f)
			if took := time.Since(start); took > budget+slack {
				t.Errorf("Evaluate returned %v after its %v deadline (slack %v)", took-budget, budget, slack)
			}
			if !res.Incomplete() {
				t.Fatalf("a cut evaluation is not marked incomplete: %s", res.Summary())
			}
			cut := res.Findings[len(res.Findings)-1]
			if cut.Rule != RuleInspectionInvalid || cut.Action != ActionFor(mode) || cut.Evidence.Reason != ReasonEvaluationDeadline {
				t.Errorf("cut finding = %+v, want rule %s, action %s", cut, RuleInspectionInvalid, ActionFor(mode))
			}
			if !strings.Contains(cut.Message, "of 2000 steps") || cut.Evidence.HistoryIndex == nil {
				t.Errorf("the cut finding does not say where it stopped: %+v", cut)
			}
			if wantDeny := mode == v1alpha1.ModeEnforce; (res.Verdict == VerdictDeny) != wantDeny {
				t.Errorf("verdict %s under %s", res.Verdict, mode)
			}
			// What was read before the deadline is still judged.
			if *cut.Evidence.HistoryIndex > 0 && !strings.Contains(res.Summary(), RuleToolchainCC) {
				t.Errorf("the steps read were not judged: %s", res.Summary())
			}
		})
	}
}

// A context already done reads no step at all; one that never ends reads
// them all, and the result is complete.
func TestEvaluateContextBounds(t *testing.T) {
	c, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := hostileHistory(3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := c.Evaluate(ctx, f)
	if !res.Incomplete() || res.Verdict != VerdictDeny || !strings.Contains(res.Findings[len(res.Findings)-1].Message, "after 0 of 3 steps") {
		t.Errorf("a done context: %s %+v", res.Summary(), res.Findings)
	}
	res = c.Evaluate(context.Background(), f)
	if res.Incomplete() {
		t.Errorf("an evaluation without a deadline was cut: %s", res.Summary())
	}
	if diff := Evaluate(nil, f).Summary(); diff != res.Summary() {
		t.Errorf("Evaluate and (*Compiled).Evaluate differ: %q, %q", diff, res.Summary())
	}
	// No history: nothing to cut, even when the context is done.
	if res := c.Evaluate(ctx, &image.Facts{Reference: "x:1"}); res.Incomplete() {
		t.Errorf("an image without history was cut: %s", res.Summary())
	}
}
