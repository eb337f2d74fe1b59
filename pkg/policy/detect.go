package policy

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"slimgate.dev/slimgate/pkg/image"
)

// Signal strengths: what installs a toolchain beats what merely shows it.
const (
	weak     = 1 // a default command, a helper package: corroborates only
	moderate = 2 // an environment variable, a label, a version check
	strong   = 3 // a download, a package install, a build command
)

// Evidence kinds of a hit. Installs (packages, downloads, paths) can be
// removed again; the others describe a toolchain and are dropped when
// every install of it was removed.
const (
	kindInstall = iota
	kindDescribes
	kindLabel
)

// hit is one piece of evidence for one rule.
type hit struct {
	rule     string
	strength int
	kind     int
	// index is the history entry (or -1), needle the text matched in it.
	index  int
	needle string
	// what says in a few words what was found.
	what  string
	env   string
	label string
	// related are other history entries to attribute bytes to (the step
	// that installed what an ENV line announced, the dependency install of
	// a node build).
	related []int
	// sig is the download signal of a download hit.
	sig *downloadSignal
	// removedBy is the later step that removed what this install hit
	// installed, or -1.
	removedBy int
}

// step is one history entry read for detection.
type step struct {
	image.HistoryEntry
	instruction
}

// analysis is what the detectors found in one image.
type analysis struct {
	det      *detector
	hits     []hit
	versions map[string]string
	notes    []string
	steps    []step
	// unread counts the history steps left unanalysed because the
	// evaluation was stopped (see stopped).
	unread int
	// unreadParts are the steps a bound of the reader left partly unread
	// (a line past the line cap, expansion past its budget, scripts
	// nested too deep), each with its note: what was not read may hold an
	// install. Bounds past which the analysis keeps a toolchain (removals
	// not credited) are only noted.
	unreadParts []unreadPart
	// workdir is the working directory the steps so far set.
	workdir string
	// pkgs follows packages across steps; live are the installs of
	// earlier steps still in the image, with the hit they back.
	pkgs pkgState
	live []liveArtifact
	// seen is scratch space for the literal index, one flag per
	// download pattern.
	seen []bool
}

// unreadPart is a step a bound left partly unread, and the note saying so.
type unreadPart struct {
	index int
	note  string
}

// liveArtifact is an install of an earlier step that is still in the
// image: a later step may remove it.
type liveArtifact struct {
	art *artifact
	hit int // index into hits
}

// downloadSignal recognises a toolchain fetched by URL or file name, in
// RUN and ADD lines.
type downloadSignal struct {
	rule     string
	strength int
	re       *regexp.Regexp
	// homes are the variables naming the folders the fetched installer
	// writes to when run (rustup: RUSTUP_HOME, CARGO_HOME); without them
	// what an installer writes cannot be followed.
	homes []string
	// unless is an argument that makes the download something else
	// (dotnet-install.sh --runtime installs no SDK).
	unless string
	// runtime are the archive members that hold only the toolchain's
	// runtime: extracting nothing else installs no toolchain.
	runtime *regexp.Regexp
}

// runtimeOnly reports whether every member named is runtime only.
func (d *downloadSignal) runtimeOnly(members []string) bool {
	if d.runtime == nil || len(members) == 0 {
		return false
	}
	for _, m := range members {
		if !d.runtime.MatchString(m) {
			return false
		}
	}
	return true
}

// packageRules returns the signals a package name matches, one per rule
// (r-base-dev pulls in both a C and a Fortran compiler).
func (d *detector) packageRules(name string, scratch []bool) []*pkgSignal {
	out := slices.Clone(d.pkgNames[name])
	if len(d.pkgPatterns) > 0 {
		clear(scratch)
		if d.pkgIndex.candidates(name, scratch) {
			for i, sig := range d.pkgPatterns {
				if scratch[i] && !slices.ContainsFunc(out, func(o *pkgSignal) bool { return o.rule == sig.rule }) && sig.re.MatchString(name) {
					out = append(out, sig)
				}
			}
		}
	}
	return out
}

// analyze runs every detector of det over an image's facts. It stops
// before the next history step once done is closed (nil: never) and
// counts the steps it left unread.
func analyze(det *detector, f *image.Facts, done <-chan struct{}) analysis {
	a := analysis{det: det, versions: map[string]string{}, workdir: "/", seen: make([]bool, len(det.downloads))}
	a.pkgs.det = det
	a.pkgs.scratch = make([]bool, len(det.pkgPatterns))
	env := map[string]string{}
	envIndex := map[string]int{}
	for _, kv := range f.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	labels := map[string]string{}
	labelIndex := map[string]int{}
	for k, v := range f.Labels {
		labels[k] = v
	}
	recognised := 0
	for _, h := range f.History {
		if len(h.CreatedBy) > maxLineBytes {
			a.cutUnread(h.Index, fmt.Sprintf("its line of %s was read up to %d KiB", HumanBytes(int64(len(h.CreatedBy))), maxLineBytes>>10))
			h.CreatedBy = h.CreatedBy[:maxLineBytes]
		}
		st := step{HistoryEntry: h, instruction: parseInstruction(h.CreatedBy)}
		a.steps = append(a.steps, st)
		if st.keyword != "" {
			recognised++
		}
		switch st.keyword {
		case "ENV":
			for _, kv := range parseEnv(st.args) {
				envIndex[kv[0]] = h.Index
				if _, ok := env[kv[0]]; !ok || len(f.Env) == 0 {
					env[kv[0]] = kv[1]
				}
			}
		case "LABEL":
			for _, kv := range parseEnv(st.args) {
				labelIndex[kv[0]] = h.Index
				if _, ok := labels[kv[0]]; !ok || len(f.Labels) == 0 {
					labels[kv[0]] = kv[1]
				}
			}
		}
	}
	switch {
	case len(f.History) == 0:
		a.notes = append(a.notes, "the image config has no history (distroless, ko, bazel or squashed build): judged by its environment, labels and size only")
	case recognised == 0:
		a.notes = append(a.notes, fmt.Sprintf("the history holds no Dockerfile steps (created by %q): judged by its environment, labels and size only", shorten(f.History[0].CreatedBy, "", 40)))
	}
	a.versions = det.readVersions(env)

	node := &nodeState{}
	for i, st := range a.steps {
		if stopped(done) {
			a.unread = len(a.steps) - i
			break
		}
		a.step(st, env, node)
	}
	a.packageHits()
	a.removedLater()
	a.envHits(env, envIndex)
	a.labelHits(labels, labelIndex)
	if len(f.History) == 0 {
		a.defaultCommand(-1, append(slices.Clone(f.Entrypoint), f.Cmd...))
	}
	if h, ok := node.finding(); ok {
		a.hits = append(a.hits, h)
	}
	return a
}

// step runs the per-step detectors.
func (a *analysis) step(st step, env map[string]string, node *nodeState) {
	switch st.keyword {
	case "RUN", "":
		dl := a.downloads(st)
		if st.keyword == "RUN" || looksLikeScript(st.args) {
			a.script(st, env, node, dl)
		} else {
			a.hits = append(a.hits, dl...)
		}
	case "ADD", "COPY":
		start := len(a.hits)
		a.hits = append(a.hits, a.downloads(st)...)
		a.copyInto(st)
		// What ADD and COPY put in place may be removed by a later step.
		for i := start; i < len(a.hits); i++ {
			art := &artifact{rule: a.hits[i].rule, goneAt: -1}
			for _, p := range copyDests(st.args) {
				art.add(place{path: p})
			}
			if len(art.places) > 0 && !art.escaped {
				a.live = append(a.live, liveArtifact{art: art, hit: i})
			}
		}
	case "WORKDIR":
		if dir := strings.TrimSpace(st.args); dir != "" && !strings.Contains(dir, "$") {
			if !strings.HasPrefix(dir, "/") {
				dir = a.workdir + "/" + dir
			}
			a.workdir = path.Clean(dir)
		}
	case "CMD", "ENTRYPOINT":
		a.defaultCommand(st.Index, commandWords(st.args))
	}
}

// commandWords reads a CMD or ENTRYPOINT in exec form (a JSON array) or
// shell form.
func commandWords(args string) []string {
	var words []string
	if err := json.Unmarshal([]byte(args), &words); err == nil {
		return words
	}
	// History renders exec form without commas: ["a" "b"].
	s := strings.Trim(strings.TrimSpace(args), "[]")
	for _, w := range strings.Fields(s) {
		words = append(words, strings.Trim(w, `"`))
	}
	return words
}

// defaultCommand matches the default command's programs.
func (a *analysis) defaultCommand(index int, words []string) {
	for _, w := range words {
		name := path.Base(w)
		for _, sig := range a.det.defaults[name] {
			a.add(hit{rule: sig.rule, strength: sig.strength, kind: kindDescribes, index: index, needle: name, what: "default command is " + name, removedBy: -1})
		}
	}
}

// looksLikeScript accepts lines written by builders that record RUN steps
// without a prefix, but not "bazel build ..." style provenance lines.
func looksLikeScript(s string) bool {
	word, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	switch word {
	case "apt-get", "apk", "yum", "dnf", "microdnf", "set", "go", "mvn", "gradle", "npm", "yarn", "cargo", "dotnet", "make":
		return true
	}
	return false
}

func (a *analysis) add(h hit) { a.hits = append(a.hits, h) }

// cut notes that part of a step was not analysed, and why. What was read
// is still judged; what was not is named, so that nothing is passed over
// in silence.
func (a *analysis) cut(index int, why string) {
	a.notes = append(a.notes, fmt.Sprintf("history #%d was not analysed in full: %s", index, why))
}

// cutUnread notes that a bound left part of a step unread, which may
// hide an install: the image gets a finding (see unreadParts).
func (a *analysis) cutUnread(index int, why string) {
	a.cut(index, why)
	a.unreadParts = append(a.unreadParts, unreadPart{index: index, note: a.notes[len(a.notes)-1]})
}

// downloads finds the toolchains a step fetches by URL or file name: the
// literal index picks the patterns worth running on the step's text.
func (a *analysis) downloads(st step) []hit {
	seen := a.seen
	clear(seen)
	if !a.det.dlIndex.candidates(st.args, seen) {
		return nil
	}
	var hits []hit
	for i, d := range a.det.downloads {
		if !seen[i] {
			continue
		}
		m := d.re.FindString(st.args)
		if m == "" || (d.unless != "" && strings.Contains(st.args, d.unless)) {
			continue
		}
		what := "downloads " + fileName(st.args, m)
		if strings.HasSuffix(m, ".sh") {
			what = "runs " + m
		}
		hits = append(hits, hit{rule: d.rule, strength: d.strength, index: st.Index, needle: m, what: what, sig: d, removedBy: -1})
	}
	return hits
}

var (
	majorMinor = regexp.MustCompile(`\d+(\.\d+)?`)
	javaLegacy = regexp.MustCompile(`^1\.(\d+)`)
)

// copyDests returns the paths a COPY or ADD writes: its last operand.
func copyDests(args string) []string {
	var ops []string
	for _, w := range strings.Fields(args) {
		if !strings.HasPrefix(w, "--") {
			ops = append(ops, w)
		}
	}
	if len(ops) < 2 {
		return nil
	}
	if ops[len(ops)-2] == "in" {
		// Classic builder: "file:abc in /usr/local/go".
		ops = append(ops[:len(ops)-2], ops[len(ops)-1])
	}
	dest := ops[len(ops)-1]
	if !strings.HasPrefix(dest, "/") {
		return nil
	}
	return []string{path.Clean(dest)}
}

// copyInto flags toolchains copied in from another image or the build
// context: a source or destination at a toolchain's path.
func (a *analysis) copyInto(st step) {
	ops := strings.Fields(st.args)
	for _, sig := range a.det.paths {
		for _, w := range ops {
			if strings.HasPrefix(w, "--") || !strings.HasPrefix(w, "/") {
				continue
			}
			if pathMatches(sig.g, w) {
				a.add(hit{rule: sig.rule, strength: sig.strength, index: st.Index, needle: w, what: "copies " + shorten(w, "", 50), removedBy: -1})
				break
			}
		}
	}
}

// script runs the command detectors over one RUN step; dl are the
// downloads its text shows.
func (a *analysis) script(st step, env map[string]string, node *nodeState, dl []hit) {
	var (
		builds []hit
		nodeIn []hit
		nodeBd []hit
		// pruned is true once the step drops the devDependencies it
		// installed (rm node_modules, a production prune).
		pruned bool
	)
	pkgs := &a.pkgs
	pkgs.begin(st.Index)
	sh := newShellReader(env, st.buildArgs)
	fs := newFSState(a.workdir, a.det, make([]bool, len(a.det.downloads)), a.live)
	fs.text = st.args
	sh.observe = func(c command) {
		fs.observe(c, st.Index, func(k string) (string, bool) {
			if v, ok := c.assigns[k]; ok {
				return v, true
			}
			return sh.lookup(k)
		})
	}
	cmds := sh.commands(st.args)
	pkgs.files = packageFiles(cmds)
	for _, c := range cmds {
		pkgs.observe(c)
		for _, sig := range a.det.commands[c.name] {
			if !sig.matches(c) {
				continue
			}
			h := hit{rule: sig.rule, strength: sig.strength, kind: kindDescribes, index: st.Index, needle: c.name, removedBy: -1}.runs(c)
			if sig.rule == RuleBuildGo && len(c.args) > 0 {
				h.needle = "go " + firstOperand(c.args)
			}
			if strings.HasPrefix(sig.rule, "build.") {
				builds = append(builds, h)
				if sig.rule == RuleBuildNpm || sig.rule == RuleBuildYarn {
					nodeBd = append(nodeBd, h)
				}
				continue
			}
			a.add(h)
		}
		if len(nodeIn) > 0 && prunesDevDependencies(c) {
			pruned = true
		}
		switch c.name {
		case "npm", "pnpm", "yarn":
			if jsDevInstall(c, env) {
				nodeIn = append(nodeIn, hit{index: st.Index, strength: strong, needle: c.name}.runs(c))
			}
		case "npx", "tsc", "webpack", "vite", "ng", "next", "nest", "rollup", "esbuild":
			if bundler(c) {
				nodeBd = append(nodeBd, hit{index: st.Index, strength: strong, needle: c.name}.runs(c))
			}
		}
	}
	for _, why := range sh.limits {
		a.cutUnread(st.Index, why)
	}
	for _, why := range fs.limits {
		a.cut(st.Index, why)
	}
	if pkgs.overBudget() {
		a.cut(st.Index, fmt.Sprintf("package removals past %d checks were not credited", maxPkgWork))
	}
	// Downloads the commands show once their variables are expanded,
	// when the step's text did not name them.
	for _, art := range fs.arts {
		if art.sig != nil && !slices.ContainsFunc(dl, func(h hit) bool { return h.sig == art.sig }) {
			dl = append(dl, hit{rule: art.rule, strength: art.sig.strength, index: st.Index, needle: art.needle,
				what: "downloads " + shorten(path.Base(art.needle), "", 60), sig: art.sig, removedBy: -1})
		}
	}
	// A toolchain fetched into a folder the step deletes again leaves
	// nothing in its layer.
	cleared := false
	kept := 0
	for _, h := range dl {
		if fs.cleared(h.sig) {
			cleared = true
			continue
		}
		a.hits = append(a.hits, h)
		kept++
		for _, art := range fs.arts {
			if art.sig == h.sig && !art.gone() {
				a.live = append(a.live, liveArtifact{art: art, hit: len(a.hits) - 1})
			}
		}
	}
	// Files put at a toolchain's path, unless the step deleted them.
	for _, art := range fs.arts {
		if art.path == nil || art.gone() {
			continue
		}
		a.add(hit{rule: art.rule, strength: art.path.strength, index: st.Index, needle: art.needle, what: "puts " + shorten(art.needle, "", 50), removedBy: -1})
		a.live = append(a.live, liveArtifact{art: art, hit: len(a.hits) - 1})
	}
	// Official runtime images build from source with dependencies (or a
	// toolchain) they remove again in the same step: nothing of such a
	// build is shipped.
	tempToolchain := cleared && kept == 0 && !pkgs.keepsToolchain()
	// A node build's tools are in node_modules, not in packages: only
	// dropping the devDependencies in the same step undoes it, and a
	// package purge (a git or python build group) does not.
	if pruned {
		nodeIn, nodeBd = nil, nil
		builds = slices.DeleteFunc(builds, func(h hit) bool { return jsBuildRule(h.rule) })
	}
	if !pkgs.selfCleaning() && !tempToolchain {
		a.hits = append(a.hits, builds...)
	} else {
		a.hits = append(a.hits, slices.DeleteFunc(builds, func(h hit) bool { return !jsBuildRule(h.rule) })...)
	}
	node.installs = append(node.installs, nodeIn...)
	node.builds = append(node.builds, nodeBd...)
}

// jsBuildRule reports whether rule is a build script run by a node
// package manager.
func jsBuildRule(rule string) bool { return rule == RuleBuildNpm || rule == RuleBuildYarn }

// prunesDevDependencies recognises a command that drops the installed
// devDependencies again: node_modules deleted, or a prune or reinstall
// down to the production dependencies.
func prunesDevDependencies(c command) bool {
	ops := operands(c.args, nil)
	production := hasArg(c.args, "--production", "--prod", "--omit=dev", "-P") || hasArg(c.args, "--omit")
	switch c.name {
	case "rm":
		return slices.ContainsFunc(ops, func(op string) bool { return path.Base(strings.TrimRight(op, "/")) == "node_modules" })
	case "npm", "pnpm":
		return production && len(ops) > 0 && (ops[0] == "prune" || ops[0] == "ci" || ops[0] == "install" || ops[0] == "i")
	case "yarn":
		return production && (len(ops) == 0 || ops[0] == "install" || (len(ops) > 1 && ops[0] == "workspaces" && ops[1] == "focus"))
	}
	return false
}

// matches reports whether a command matches the signal.
func (s *cmdSignal) matches(c command) bool {
	if !s.versionChecks && versionCheck(c.args) {
		return false
	}
	if len(s.args) > 0 {
		ops := operands(c.args, nil)
		if len(ops) < len(s.args) {
			return false
		}
		for i, re := range s.args {
			if !re.MatchString(ops[i]) {
				return false
			}
		}
	}
	if s.anyArg != nil && !slices.ContainsFunc(c.args, s.anyArg.MatchString) {
		return false
	}
	return true
}

// packageHits reports, per step and rule, the toolchain packages each
// step installed: those still installed, and those a later step removed
// (whose bytes still ship in the installing step's layer).
func (a *analysis) packageHits() {
	type key struct {
		step, removedBy int
		rule            string
		weak            bool
	}
	groups := map[key][]installedPkg{}
	var order []key
	for _, ip := range a.pkgs.installed {
		if ip.rule == "" || (ip.removed && ip.removedBy == ip.step) {
			continue
		}
		k := key{step: ip.step, removedBy: -1, rule: ip.rule, weak: ip.weak}
		if ip.removed {
			k.removedBy = ip.removedBy
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], ip)
	}
	for _, k := range order {
		var names []string
		for _, ip := range groups[k] {
			if !slices.Contains(names, ip.name) {
				names = append(names, ip.name)
			}
		}
		strength := strong
		if k.weak {
			strength = weak
		}
		a.add(hit{rule: k.rule, strength: strength, index: k.step, needle: names[0], removedBy: k.removedBy,
			what: shorten(groups[k][0].manager+" installs "+strings.Join(names, ", "), "", 60)})
	}
}

// removedLater marks the install hits whose every file a later step
// deleted.
func (a *analysis) removedLater() {
	by := map[int][]*artifact{}
	for _, l := range a.live {
		by[l.hit] = append(by[l.hit], l.art)
	}
	for i, arts := range by {
		last := -1
		for _, art := range arts {
			if !art.gone() {
				last = -1
				break
			}
			last = max(last, art.goneAt)
		}
		if last > a.hits[i].index {
			a.hits[i].removedBy = last
		}
	}
}

// envHits turns toolchain environment variables into hits, pointing at the
// step that most likely installed what the variable announces: the first
// install of the same rule after the ENV line, else the first step after
// it that added a layer.
func (a *analysis) envHits(env map[string]string, envIndex map[string]int) {
	a.kvHits(a.det.env, env, envIndex, func(h *hit, k, v string) {
		h.kind, h.env, h.what = kindDescribes, k+"="+v, "ENV "+shorten(k+"="+v, "", 50)
		if k == "PATH" {
			h.what = "PATH " + shorten(v, "", 50)
		}
		if h.index >= 0 {
			if inst := a.installStep(h.index, h.rule); inst >= 0 {
				h.related = []int{inst}
			}
		}
	})
}

// labelHits turns labels into hits.
func (a *analysis) labelHits(labels map[string]string, labelIndex map[string]int) {
	a.kvHits(a.det.labels, labels, labelIndex, func(h *hit, k, v string) {
		h.kind, h.label, h.what = kindLabel, k+"="+v, "LABEL "+shorten(k+"="+v, "", 60)
	})
}

// kvHits matches key=value signals against values (in key order), at the
// history entry that set each, and lets fill complete each hit.
func (a *analysis) kvHits(sigs []*kvSignal, values map[string]string, index map[string]int, fill func(h *hit, k, v string)) {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, sig := range sigs {
		for _, k := range keys {
			v := values[k]
			if !sig.key.Match(k) || strings.TrimSpace(v) == "" || (sig.value != nil && !sig.value.MatchString(v)) {
				continue
			}
			h := hit{rule: sig.rule, strength: sig.strength, index: -1, needle: k, removedBy: -1}
			if i, ok := index[k]; ok {
				h.index = i
			}
			fill(&h, k, v)
			a.add(h)
		}
	}
}

// installStep finds the step that installed what an ENV line at after
// announces: the first install hit of the rule after it, else the first
// layer-adding RUN, COPY or ADD after it.
func (a *analysis) installStep(after int, rule string) int {
	best := -1
	for _, h := range a.hits {
		if h.rule == rule && h.kind == kindInstall && h.index > after && (best < 0 || h.index < best) {
			best = h.index
		}
	}
	if best >= 0 {
		return best
	}
	for _, st := range a.steps {
		if st.Index <= after || st.EmptyLayer {
			continue
		}
		if st.keyword == "RUN" || st.keyword == "COPY" || st.keyword == "ADD" {
			return st.Index
		}
	}
	return -1
}

// readVersions reads the toolchain versions an image declares, for
// remedies, keyed by rule.
func (d *detector) readVersions(env map[string]string) map[string]string {
	out := map[string]string{}
	for rule, vs := range d.versions {
		for _, k := range vs.env {
			s := majorMinor.FindString(env[k])
			if s == "" {
				continue
			}
			if vs.parts == 1 {
				if m := javaLegacy.FindStringSubmatch(env[k]); m != nil && strings.HasPrefix(s, "1.") {
					// "1.8.0_322" style.
					s = m[1]
				} else {
					s, _, _ = strings.Cut(s, ".")
				}
			}
			out[rule] = s
			break
		}
	}
	return out
}

// runs completes a command's hit with the command, shortened; built only
// for the commands that are evidence.
func (h hit) runs(c command) hit {
	if h.what == "" {
		h.what = "runs " + shorten(c.text, c.name, 50)
	}
	return h
}

// versionCheck reports whether a tool is only asked for its version.
func versionCheck(args []string) bool {
	if len(args) == 0 {
		return false
	}
	for _, a := range args {
		switch a {
		case "--version", "-version", "-v", "--help", "-help", "-h", "--full-version", "-fullversion":
		default:
			return false
		}
	}
	return true
}

// jsDevInstall recognises a dependency install that includes
// devDependencies: no package names, no production flags.
func jsDevInstall(c command, env map[string]string) bool {
	if env["NODE_ENV"] == "production" || c.assigns["NODE_ENV"] == "production" {
		return false
	}
	if hasArg(c.args, "--production", "--omit=dev", "--only=prod", "--only=production", "-g", "--global", "--prod", "-P") {
		return false
	}
	if hasArg(c.args, "--omit") {
		return false
	}
	ops := operands(c.args, nil)
	switch {
	case c.name == "yarn":
		return len(ops) == 0 || (ops[0] == "install" && len(ops) == 1)
	case len(ops) == 1 && (ops[0] == "ci" || ops[0] == "install" || ops[0] == "i"):
		return true
	}
	return false
}

// bundler recognises a front-end or TypeScript build run directly.
func bundler(c command) bool {
	name, args := c.name, c.args
	if name == "npx" {
		ops := operands(args, nil)
		if len(ops) == 0 {
			return false
		}
		name, args = ops[0], ops[1:]
	}
	switch name {
	case "tsc", "webpack", "rollup", "esbuild":
		return !versionCheck(args)
	case "vite", "ng", "next", "nest":
		return firstOperand(args) == "build"
	}
	return false
}

// nodeState collects, across steps, the node dependency installs and
// builds that together make toolchain.node-build.
type nodeState struct {
	installs, builds []hit
}

func (n *nodeState) finding() (hit, bool) {
	if len(n.installs) == 0 || len(n.builds) == 0 {
		return hit{}, false
	}
	h := n.builds[0]
	h.rule = RuleToolchainNodeBuild
	h.what = fmt.Sprintf("installs devDependencies (history #%d) and %s", n.installs[0].index, h.what)
	for _, in := range n.installs {
		h.related = append(h.related, in.index)
	}
	return h, true
}

// fileName returns the URL path segment or word around a match.
func fileName(s, match string) string {
	i := strings.Index(s, match)
	if i < 0 {
		return shorten(match, "", 60)
	}
	start := strings.LastIndexAny(s[:i], " \t'\"/=") + 1
	end := i + len(match)
	if j := strings.IndexAny(s[end:], " \t'\";"); j >= 0 {
		end += j
	} else {
		end = len(s)
	}
	return shorten(s[start:end], "", 60)
}
