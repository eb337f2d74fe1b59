package policy

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Hostile history lines: the image's author writes them, so the history
// analysis must do work linear in their length and never let a cap hide
// what was read. The assertions are on resources (bytes allocated, as
// runtime.MemStats.TotalAlloc counts them, which bounds how far the heap
// can grow, and allocation counts), not only on results. Allocation
// figures are deterministic, so these tests use no wall-clock thresholds.

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hasNote reports whether a note names every one of parts.
func hasNote(notes []string, parts ...string) bool {
	return slices.ContainsFunc(notes, func(n string) bool {
		for _, p := range parts {
			if !strings.Contains(n, p) {
				return false
			}
		}
		return true
	})
}

// TestHostileExpansionIsCapped: "A=x; A=$A$A; ..." doubles a value with
// every assignment. Read without a cap, 24 doublings make a 16 MiB value
// and 60 would ask for an exabyte; with the cap the work stays bounded and
// the rest of the step is still judged.
func TestHostileExpansionIsCapped(t *testing.T) {
	def := Default()
	for _, n := range []int{16, 24, 60} {
		line := "RUN /bin/sh -c A=x; " + strings.Repeat("A=$A$A; ", n) + "apt-get install -y gcc # buildkit"
		f := historyFacts(t, nil, line)
		var res Result
		got := allocated(func() { res = Evaluate(&def.Spec, f) })
		// The expansion cap is 256 KiB per line; the bound leaves room
		// for a few copies of it and the fixed cost of Evaluate.
		const bound = 4 << 20
		t.Logf("%d doublings: %d bytes allocated", n, got)
		if got > bound {
			t.Fatalf("%d doublings: Evaluate allocated %d bytes, want at most %d", n, got, bound)
		}
		if !slices.Contains(ruleIDs(res), RuleToolchainCC) {
			t.Errorf("%d doublings: gcc install after the expansions not judged: %s", n, res.Summary())
		}
		if n >= 24 && !hasNote(res.Notes, "history #0", "expansion") {
			t.Errorf("%d doublings: no note that expansion was capped: %q", n, res.Notes)
		}
	}
}

// TestHostileEnvIsLinear: an ENV value of many words was built by
// appending each word to the value so far, quadratic in the words.
func TestHostileEnvIsLinear(t *testing.T) {
	def := Default()
	cost := func(words int) uint64 {
		var b strings.Builder
		b.WriteString("ENV LONG=")
		for i := range words {
			fmt.Fprintf(&b, "w%05d ", i)
		}
		b.WriteString("OTHER=1")
		f := historyFacts(t, nil, b.String())
		return allocated(func() { Evaluate(&def.Spec, f) })
	}
	// 8n words make a line of 56 KB, under the 64 KiB line cap.
	small, large := cost(1000), cost(8000)
	t.Logf("ENV of 1000 words: %d bytes allocated; of 8000 words: %d", small, large)
	if large > 10*small {
		t.Errorf("8x the words cost %.1fx the bytes, want at most 10x (linear)", float64(large)/float64(small))
	}
	if limit := uint64(64 * 56_000); large > limit {
		t.Errorf("an ENV line of 56 KB allocated %d bytes, want at most %d (64 per input byte)", large, limit)
	}
	parsed := parseEnv("A=1 B=x y  z C=\"q\"")
	if want := [][2]string{{"A", "1"}, {"B", "x y z"}, {"C", "q"}}; !slices.Equal(parsed, want) {
		t.Errorf("parseEnv = %q, want %q", parsed, want)
	}
}

// TestHostileScriptIsLinear: tokenizing, expanding and following the
// package managers of a long script costs in proportion to its length, in
// bytes and in allocations.
func TestHostileScriptIsLinear(t *testing.T) {
	def := Default()
	facts := func(cmds int) func() {
		var b strings.Builder
		b.WriteString("RUN /bin/sh -c P=pkg; ")
		for i := range cmds {
			fmt.Fprintf(&b, "apt-get install -y $P%04d; apt-get purge -y x%04d; ", i, i)
		}
		b.WriteString("# buildkit")
		f := historyFacts(t, nil, b.String())
		return func() { _ = Evaluate(&def.Spec, f) }
	}
	small, large := facts(100), facts(800)
	bs, bl := allocated(small), allocated(large)
	as, al := testing.AllocsPerRun(3, small), testing.AllocsPerRun(3, large)
	t.Logf("100 commands: %d bytes, %.0f allocations; 800 commands: %d bytes, %.0f allocations", bs, as, bl, al)
	if bl > 10*bs || al > 10*as {
		t.Errorf("8x the commands cost %.1fx the bytes and %.1fx the allocations, want at most 10x", float64(bl)/float64(bs), al/as)
	}
}

// TestHostileLongLine: a 10 MiB history line is analysed up to the line
// cap, with a note; what was read is judged, so a toolchain installed in
// its first KiB still denies the image.
func TestHostileLongLine(t *testing.T) {
	def := Default()
	const size = 10 << 20
	pad := func(n int) string {
		return strings.Repeat("echo padding-padding-padding; ", n/30+1)[:n]
	}
	head := "RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && "
	line := head + pad(size-len(head)-20) + " # buildkit"
	f := historyFacts(t, nil, line)

	var an analysis
	got := allocated(func() { an = analyze(builtin(), f, nil) })
	t.Logf("analysing a %d byte line: %d bytes allocated", len(line), got)
	// Analysis reads at most the 64 KiB line cap, whatever the line's
	// length: at most 40 bytes allocated per byte analysed.
	if limit := uint64(40 * 64 << 10); got > limit {
		t.Errorf("analysing a %d byte line allocated %d bytes, want at most %d", len(line), got, limit)
	}
	if !hasNote(an.notes, "history #0", "64 KiB") {
		t.Errorf("no note that the line was cut: %q", an.notes)
	}

	var res Result
	got = allocated(func() { res = Evaluate(&def.Spec, f) })
	t.Logf("Evaluate of a %d byte line: %d bytes allocated", len(line), got)
	// Evaluate also quotes the line as evidence, which collapses its
	// whitespace: linear, at most 8 bytes per input byte.
	if limit := uint64(8 * len(line)); got > limit {
		t.Errorf("Evaluate of a %d byte line allocated %d bytes, want at most %d", len(line), got, limit)
	}
	if res.Verdict != VerdictDeny || !slices.Contains(ruleIDs(res), RuleToolchainCC) {
		t.Errorf("gcc installed in the first KiB not judged: %s", res.Summary())
	}

	// An install past the cap is not read: the image is not silently
	// allowed, a note says which step was cut and where.
	late := "RUN /bin/sh -c " + pad(128<<10) + "; apt-get install -y gcc # buildkit"
	res = Evaluate(&def.Spec, historyFacts(t, nil, "ADD rootfs.tar / # buildkit", late))
	if !hasNote(res.Notes, "history #1", "64 KiB") {
		t.Errorf("install past the cap: no note naming the cut step: %q", res.Notes)
	}
}

// nest wraps a script in k levels of sh -c '...', quoting as a shell
// would.
func nest(k int, script string) string {
	for range k {
		script = "sh -c '" + strings.ReplaceAll(script, "'", `'\''`) + "'"
	}
	return script
}

// TestHostileNesting: scripts passed to sh -c are read up to a fixed
// depth; deeper ones are noted, and deep nesting costs work linear in
// the line.
func TestHostileNesting(t *testing.T) {
	def := Default()
	for k := 1; k <= 3; k++ {
		res := Evaluate(&def.Spec, historyFacts(t, nil, "RUN /bin/sh -c "+nest(k, "go build -o /app .")+" # buildkit"))
		if !slices.Contains(ruleIDs(res), RuleBuildGo) {
			t.Errorf("go build nested %d deep not found: %s", k, res.Summary())
		}
	}
	deep := "RUN /bin/sh -c " + nest(6, "go build -o /app .") + " # buildkit"
	res := Evaluate(&def.Spec, historyFacts(t, nil, deep))
	if !hasNote(res.Notes, "history #0", "nested") {
		t.Errorf("go build nested 6 deep: no note that the nesting was not read: %q", res.Notes)
	}

	line := "RUN /bin/sh -c " + nest(9, "make") + " # buildkit"
	f := historyFacts(t, nil, line)
	got := allocated(func() { analyze(builtin(), f, nil) })
	t.Logf("%d byte line nested 9 deep: %d bytes allocated", len(line), got)
	if limit := uint64(64*len(line) + 64<<10); got > limit {
		t.Errorf("nesting 9 deep (%d bytes) allocated %d bytes, want at most %d", len(line), got, limit)
	}
}

// FuzzShellReader checks the bounds of the shell reader on any script:
// the commands it returns hold at most the script and what expansion may
// add, per level of sh -c it reads; the expansion budget is never
// overdrawn; package bookkeeping stays within its budget; and ENV parsing
// returns no more than it was given.
func FuzzShellReader(f *testing.F) {
	f.Add("A=x; "+strings.Repeat("A=$A$A; ", 30)+"apt-get install -y $A gcc", "make")
	f.Add(nest(6, "go build -o /app ."), "")
	f.Add(`savedAptMark="$(apt-mark showmanual)"; apt-get install -y gcc make; apt-mark auto '.*'; echo gcc | sort | xargs apt-mark manual; apt-get purge -y --auto-remove`, "")
	f.Add("apk add --virtual .b gcc && apk del .b gcc 'g*' && dnf install -y $E && dnf history undo last && yum remove 'g[' '['", "gcc make")
	f.Add(`LONG=a B="x y" C z`, `"`)
	f.Add(redisSlim, "")
	f.Fuzz(func(t *testing.T, script, env string) {
		r := newShellReader(map[string]string{"E": env, "P": env + " " + env}, map[string]string{"B": env})
		cmds := r.commands(script)
		text := 0
		for _, c := range cmds {
			text += len(c.text)
		}
		if bound := (maxScriptDepth + 1) * 2 * (len(script) + maxExpandBytes); text > bound {
			t.Fatalf("commands hold %d bytes for a %d byte script, want at most %d", text, len(script), bound)
		}
		if r.budget < 0 {
			t.Fatalf("expansion budget overdrawn: %d", r.budget)
		}
		var p pkgState
		for _, c := range cmds {
			p.observe(c)
		}
		// Packages that only corroborate a toolchain (make, the libc
		// headers) may stay in a self-cleaning step; a toolchain may not.
		if p.selfCleaning() && slices.ContainsFunc(p.installed, func(ip installedPkg) bool { return !ip.removed && p.keeps(ip) }) {
			t.Fatalf("self-cleaning with toolchain packages left: %+v", p.installed)
		}
		// One visit may overshoot the budget, and then nothing more runs.
		if limit := maxPkgWork + len(p.installed)*(1+len(script)); p.work > limit {
			t.Fatalf("package work %d, want at most %d", p.work, limit)
		}
		n := 0
		for _, kv := range parseEnv(script) {
			n += len(kv[0]) + len(kv[1])
		}
		if n > len(script) {
			t.Fatalf("parseEnv returned %d bytes from %d", n, len(script))
		}
	})
}

// TestHostileDownloadsAreBounded: a step that fetches a toolchain
// thousands of times and deletes thousands of paths costs in proportion
// to its length (the lifecycle follows a bounded number of downloads), and
// what it could not follow stays a finding, with a note.
func TestHostileDownloadsAreBounded(t *testing.T) {
	def := Default()
	facts := func(n int) (*Result, func()) {
		var b strings.Builder
		b.WriteString("RUN /bin/sh -c cd /tmp; ")
		for i := range n {
			fmt.Fprintf(&b, "curl -fsSLo /tmp/g%04d.tgz https://go.dev/dl/go1.22.%d.linux-amd64.tar.gz; mv /tmp/g%04d.tgz /tmp/h%04d; rm -rf /tmp/x%04d; ", i, i, i, i, i)
		}
		b.WriteString("rm -rf /tmp/* # buildkit")
		f := historyFacts(t, nil, b.String())
		res := new(Result)
		return res, func() { *res = Evaluate(&def.Spec, f) }
	}
	// 50 and 400 downloads: within the line cap, past the bound.
	_, small := facts(50)
	res, large := facts(400)
	as, al := testing.AllocsPerRun(3, small), testing.AllocsPerRun(3, large)
	bs, bl := allocated(small), allocated(large)
	t.Logf("50 downloads: %d bytes, %.0f allocations; 400: %d bytes, %.0f allocations", bs, as, bl, al)
	if bl > 10*bs || al > 10*as {
		t.Errorf("8x the downloads cost %.1fx the bytes and %.1fx the allocations, want at most 10x", float64(bl)/float64(bs), al/as)
	}
	large()
	if hasNote(res.Notes, "was not analysed in full: its line") {
		t.Fatalf("the line was cut: %q", res.Notes)
	}
	if !slices.Contains(ruleIDs(*res), RuleToolchainGo) || !hasNote(res.Notes, "were not followed") {
		t.Errorf("downloads past the bound: findings %v, notes %q; want toolchain.go and a note", ruleIDs(*res), res.Notes)
	}
}
