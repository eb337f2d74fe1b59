package policy

import (
	"slices"
	"strings"
	"testing"
)

// Ways an image's author could get a toolchain past the detection, found
// in review: each case is a history line a builder writes; the near
// misses next to them stay allowed.

// historyCase is a history and the rules the default policy finds in it.
type historyCase struct {
	name  string
	lines []string
	want  []string
}

// checkCases judges each case's history under the default policy.
func checkCases(t *testing.T, cases []historyCase) {
	t.Helper()
	def := Default()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkRules(t, Evaluate(&def.Spec, historyFacts(t, nil, tc.lines...)), tc.want)
		})
	}
}

// runStep is the history line BuildKit writes for RUN script.
func runStep(script string) string { return "RUN /bin/sh -c " + script + " # buildkit" }

// TestShellOptionsDoNotHideTheScript: a shell run with options before or
// bundled with -c (SHELL ["/bin/bash", "-euxo", "pipefail", "-c"], bash
// -lc, sh -xc) runs the script that follows them.
func TestShellOptionsDoNotHideTheScript(t *testing.T) {
	checkCases(t, []historyCase{
		{name: "SHELL bash -euxo pipefail -c",
			lines: []string{"RUN /bin/bash -euxo pipefail -c apt-get install -y --no-install-recommends build-essential # buildkit"},
			want:  []string{RuleToolchainCC}},
		{name: "SHELL bash -O extglob -ec",
			lines: []string{"RUN /bin/bash -O extglob -ec apt-get install -y --no-install-recommends golang-go # buildkit"},
			want:  []string{RuleToolchainGo}},
		{name: "bash -lc in the script", lines: []string{runStep(`bash -lc "apt-get install -y build-essential"`)}, want: []string{RuleToolchainCC}},
		{name: "sh -xc in the script", lines: []string{runStep(`sh -xc 'go build -o /app .'`)}, want: []string{RuleBuildGo}},

		// Near misses.
		{name: "bash -euxo pipefail -c without a toolchain", lines: []string{"RUN /bin/bash -euxo pipefail -c apt-get install -y ca-certificates # buildkit"}},
		{name: "a script file run with options", lines: []string{runStep(`sh -x ./build.sh go`)}},
	})
}

// TestBuildArgValuesWithSpaces: BuildKit writes a RUN's build arguments
// as "|N K=V ..." without quoting their values, so a value may hold
// spaces ("ARG BUILD_DEPS="make gcc"").
func TestBuildArgValuesWithSpaces(t *testing.T) {
	checkCases(t, []historyCase{
		{name: "a list of packages, then another argument",
			lines: []string{"RUN |2 BUILD_DEPS=make gcc VERSION=1.2 /bin/sh -c apt-get update && apt-get install -y $BUILD_DEPS # buildkit"},
			want:  []string{RuleToolchainCC}},
		{name: "flags as the last argument",
			lines: []string{"RUN |1 GOFLAGS=-trimpath -mod=vendor /bin/sh -c go build -o /app . # buildkit"},
			want:  []string{RuleBuildGo}},
		{name: "the packages installed and purged again",
			lines: []string{"RUN |1 BUILD_DEPS=gcc libc6-dev make /bin/sh -c apt-get install -y $BUILD_DEPS && make && apt-get purge -y --auto-remove $BUILD_DEPS # buildkit"}},
	})
}

// TestAptRemovalKeepsDependencies: apt-get remove and purge (and dpkg)
// remove the packages named, not what they pulled in: "apt-get purge
// build-essential" removes a metapackage and leaves gcc, g++ and make.
// Only an autoremove takes the dependencies too.
func TestAptRemovalKeepsDependencies(t *testing.T) {
	checkCases(t, []historyCase{
		{name: "metapackage purged without autoremove",
			lines: []string{runStep("apt-get update && apt-get install -y build-essential && make && apt-get purge -y build-essential")},
			want:  []string{RuleBuildMake, RuleToolchainCC}},
		{name: "gcc removed after a pip build",
			lines: []string{runStep("apt-get update && apt-get install -y gcc libc6-dev && pip install --no-cache-dir uwsgi && apt-get remove -y gcc libc6-dev")},
			want:  []string{RuleToolchainCC}},
		{name: "dpkg purge",
			lines: []string{runStep("apt-get install -y gcc && gcc -c x.c && dpkg --purge gcc")},
			want:  []string{RuleBuildCC, RuleToolchainCC}},
		{name: "purged without autoremove in a later step",
			lines: []string{runStep("apt-get update && apt-get install -y golang-go"), runStep("apt-get purge -y golang-go")},
			want:  []string{RuleToolchainGo}},

		// Near misses.
		{name: "purge --auto-remove", lines: []string{runStep("apt-get install -y build-essential && make && apt-get purge -y --auto-remove build-essential")}},
		{name: "purge, then autoremove", lines: []string{runStep("apt-get install -y gcc && gcc -c x.c && apt-get purge -y gcc && apt-get autoremove -y")}},
		{name: "dpkg purge, then autoremove", lines: []string{runStep("apt-get install -y gcc && gcc -c x.c && dpkg --purge gcc && apt-get autoremove --purge -y")}},
		{name: "a later step's purge --auto-remove", lines: []string{runStep("apt-get install -y golang-go"), runStep("apt-get purge -y --auto-remove golang-go")},
			want: []string{RuleBloatRemovedLater}},
	})
}

// TestCapsAreViolations: what the reader leaves unread past its bounds (a
// line past the line cap, references past the expansion budget, scripts
// nested deeper than it reads) may hold an install, and the image's
// author chose to write it so: the image is not judged clean but gets an
// inspection.invalid finding naming the step.
func TestCapsAreViolations(t *testing.T) {
	pad := strings.Repeat("echo padding-padding-padding; ", (maxLineBytes/30)+1)
	lines := map[string]string{
		"install past the line cap":          runStep(pad + "apt-get install -y gcc"),
		"install past the expansion budget":  runStep("A=x; " + strings.Repeat("A=$A$A; ", 20) + "P=gcc; apt-get install -y $P"),
		"install nested past the depth read": runStep(nest(maxScriptDepth+2, "apt-get install -y gcc")),
	}
	def := Default()
	for name, line := range lines {
		res := Evaluate(&def.Spec, historyFacts(t, nil, "ADD rootfs.tar / # buildkit", line))
		i := slices.IndexFunc(res.Findings, func(f Finding) bool { return f.Rule == RuleInspectionInvalid })
		if res.Verdict != VerdictDeny || i < 0 {
			t.Errorf("%s: verdict %s, findings %v; want deny with %s: %q", name, res.Verdict, ruleIDs(res), RuleInspectionInvalid, res.Notes)
			continue
		}
		if f := res.Findings[i]; f.Evidence.HistoryIndex == nil || *f.Evidence.HistoryIndex != 1 || res.Incomplete() {
			t.Errorf("%s: finding %+v: want history #1, not an incomplete evaluation", name, f)
		}
	}
	// Within the bounds, no such finding.
	res := Evaluate(&def.Spec, historyFacts(t, nil, runStep(nest(maxScriptDepth, "apt-get install -y ca-certificates"))))
	checkRules(t, res, nil)
}

// TestCopiesKeepTheToolchain: a toolchain copied elsewhere before its
// folder is deleted is still in the image, whether an earlier step put it
// in place or this one did, and whether cp or a tar pipe copied it.
func TestCopiesKeepTheToolchain(t *testing.T) {
	const goURL = "https://go.dev/dl/go1.22.5.linux-amd64.tar.gz"
	checkCases(t, []historyCase{
		{name: "an earlier step's toolchain copied, then deleted", lines: []string{
			runStep("curl -fsSL " + goURL + " | tar -C /usr/local -xz"),
			runStep("cp -a /usr/local/go /opt/go && rm -rf /usr/local/go")}, want: []string{RuleToolchainGo}},
		{name: "copied out through a tar pipe, then deleted", lines: []string{
			runStep("cd /tmp && curl -fsSLO " + goURL + " && tar -xzf go1.22.5.linux-amd64.tar.gz && tar -C /tmp -cf - go | tar -C /opt -xf - && rm -rf /tmp/*")},
			want: []string{RuleToolchainGo}},

		// Near misses.
		{name: "an archive of something else", lines: []string{
			runStep("cd /tmp && curl -fsSLO " + goURL + " && tar -xzf go1.22.5.linux-amd64.tar.gz && ./go/bin/go build -o /app /src && tar -C / -czf /backup.tgz etc && rm -rf /tmp/*")}},
		{name: "an earlier step's copy of something else", lines: []string{
			runStep("curl -fsSL " + goURL + " | tar -C /usr/local -xz"),
			runStep("cp -a /etc/ssl /opt/ssl && rm -rf /usr/local/go")}, want: []string{RuleBloatRemovedLater}},
	})
}
