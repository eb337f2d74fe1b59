package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"slimgate.dev/slimgate/pkg/image"
)

// Signal strengths: what installs a toolchain beats what merely shows it.
const (
	weak     = 1 // a CMD naming a tool
	moderate = 2 // an environment variable, a version check
	strong   = 3 // a download, a package install, a build command
)

// hit is one piece of evidence for one rule.
type hit struct {
	rule     string
	strength int
	// index is the history entry (or -1), needle the text matched in it.
	index  int
	needle string
	// what says in a few words what was found.
	what string
	env  string
	// related are other history entries to attribute bytes to (the step
	// that installed what an ENV line announced, the dependency install of
	// a node build).
	related []int
	// sig is the download signal of a download hit.
	sig *downloadSignal
}

// step is one history entry read for detection.
type step struct {
	image.HistoryEntry
	instruction
}

// analysis is what the detectors found in one image.
type analysis struct {
	hits     []hit
	versions map[string]string
	notes    []string
	steps    []step
	// unread counts the history steps left unanalysed because the
	// evaluation was stopped (see stopped).
	unread int
	// workdir is the working directory the steps so far set.
	workdir string
}

// envRule maps environment variables to the toolchain they announce.
var envRules = []struct {
	key, rule string
	// hints find the step that installed the toolchain after the ENV line.
	hints []string
}{
	{"GOLANG_VERSION", RuleToolchainGo, []string{"/usr/local/go", "golang", "go.dev/dl"}},
	{"GOROOT", RuleToolchainGo, []string{"/usr/local/go", "golang", "go.dev/dl"}},
	{"MAVEN_HOME", RuleToolchainMaven, []string{"maven"}},
	{"M2_HOME", RuleToolchainMaven, []string{"maven"}},
	{"GRADLE_HOME", RuleToolchainGradle, []string{"gradle"}},
	{"GRADLE_VERSION", RuleToolchainGradle, []string{"gradle"}},
	{"RUSTUP_HOME", RuleToolchainRust, []string{"rustup", "cargo"}},
	{"CARGO_HOME", RuleToolchainRust, []string{"rustup", "cargo"}},
	{"DOTNET_SDK_VERSION", RuleToolchainDotnetSDK, []string{"dotnet"}},
	{"COMPOSER_VERSION", RuleToolchainComposer, []string{"composer"}},
}

// downloadSignal recognises a toolchain fetched by URL or file name, in
// RUN and ADD lines.
type downloadSignal struct {
	rule string
	re   *regexp.Regexp
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

// downloads are toolchains fetched by URL or file name, in RUN and ADD lines.
var downloads = []*downloadSignal{
	{rule: RuleToolchainJDK, re: regexp.MustCompile(`(?i)openjdk\d+u-jdk_|[-_]jdk_(x64|x86|aarch64|arm|ppc64|s390x|riscv64)|\bjdk\.java\.net/|download\.java\.net/java/\S*openjdk-[0-9][^/\s'"]*_bin\.tar\.gz|\bjdk-\d+(\.\d+)*_linux-|\bjdk-\d+u\d+-linux-|-ca-jdk\d|amazon-corretto-[\d.]+-[a-z0-9-]*-jdk\.|microsoft-jdk-\d|bellsoft-jdk\d|sapmachine-jdk-\d|graalvm-(community-)?jdk-\d|graalvm-ce-java\d`)},
	{rule: RuleToolchainGo, re: regexp.MustCompile(`(?i)\bgo1\.\d+(\.\d+)?((rc|beta)\d+)?\.linux-[a-z0-9]+\.tar\.gz`)},
	{rule: RuleToolchainMaven, re: regexp.MustCompile(`(?i)apache-maven-\d[\w.-]*-bin\.(tar\.gz|zip)`)},
	{rule: RuleToolchainGradle, re: regexp.MustCompile(`(?i)gradle-\d[\w.-]*-(bin|all)\.zip|services\.gradle\.org/distributions`)},
	{rule: RuleToolchainRust, re: regexp.MustCompile(`(?i)rustup-init|sh\.rustup\.rs`), homes: []string{"RUSTUP_HOME", "CARGO_HOME"}},
	{rule: RuleToolchainDotnetSDK, re: regexp.MustCompile(`(?i)dotnet-sdk-\d[\w.-]*\.(tar\.gz|zip)|dotnet-sdk/\d`), unless: "--runtime"},
	{rule: RuleToolchainDotnetSDK, re: regexp.MustCompile(`dotnet-install\.sh`), unless: "--runtime"},
	{rule: RuleToolchainComposer, re: regexp.MustCompile(`(?i)getcomposer\.org|composer-setup\.php`)},
}

var (
	ccPackage = regexp.MustCompile(`^((gcc|g\+\+|clang|clang\+\+)(-\d+(\.\d+)?)?|gcc-c\+\+|(gcc|g\+\+)-multilib|build-essential|build-base|alpine-sdk|@development[- ]tools)$`)
	// ccHelper are the parts of a C toolchain that compile nothing by
	// themselves: make without a compiler builds nothing native. They
	// only corroborate a compiler.
	ccHelper   = regexp.MustCompile(`^(make|libc6-dev|libc-dev|glibc-devel)$`)
	jdkPackage = regexp.MustCompile(`^(openjdk-\d+-jdk(-headless)?|openjdk\d+(-jdk)?|default-jdk(-headless)?|java-\S*-(openjdk|amazon-corretto)-devel\S*|java-\d+-amazon-corretto-jdk|amazon-corretto-\d+|temurin-\d+-jdk|zulu\d*-jdk(-headless)?|msopenjdk-\d+|oracle-java\d+-installer|sapmachine-\d+-jdk(-headless)?)$`)
	goPackage  = regexp.MustCompile(`^(go|golang|golang-go|golang-bin|golang-\d+(\.\d+)?(-go)?)$`)
	pkgRules   = []struct {
		rule string
		re   *regexp.Regexp
		// weak packages only corroborate.
		weak bool
	}{
		{RuleToolchainCC, ccPackage, false},
		{RuleToolchainCC, ccHelper, true},
		{RuleToolchainJDK, jdkPackage, false},
		{RuleToolchainGo, goPackage, false},
		{RuleToolchainMaven, regexp.MustCompile(`^maven$`), false},
		{RuleToolchainGradle, regexp.MustCompile(`^gradle$`), false},
		{RuleToolchainRust, regexp.MustCompile(`^(rust|rustc|cargo|rustup)$`), false},
		{RuleToolchainDotnetSDK, regexp.MustCompile(`^(dotnet-sdk-\d[\d.]*|dotnet\d+-sdk)$`), false},
		{RuleToolchainComposer, regexp.MustCompile(`^composer$`), false},
	}
)

// toolchainRule returns the rule a package name belongs to, or "", and
// whether the package only corroborates the rule.
func toolchainRule(name string) (string, bool) {
	for _, pr := range pkgRules {
		if pr.re.MatchString(name) {
			return pr.rule, pr.weak
		}
	}
	return "", false
}

// analyze runs every detector over an image's facts. It stops before the
// next history step once done is closed (nil: never) and counts the steps
// it left unread.
func analyze(f *image.Facts, done <-chan struct{}) analysis {
	a := analysis{versions: map[string]string{}, workdir: "/"}
	env := map[string]string{}
	envIndex := map[string]int{}
	for _, kv := range f.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	recognised := 0
	for _, h := range f.History {
		if len(h.CreatedBy) > maxLineBytes {
			a.cut(h.Index, fmt.Sprintf("its line of %s was read up to %d KiB", HumanBytes(int64(len(h.CreatedBy))), maxLineBytes>>10))
			h.CreatedBy = h.CreatedBy[:maxLineBytes]
		}
		st := step{HistoryEntry: h, instruction: parseInstruction(h.CreatedBy)}
		a.steps = append(a.steps, st)
		if st.keyword != "" {
			recognised++
		}
		if st.keyword == "ENV" {
			for _, kv := range parseEnv(st.args) {
				envIndex[kv[0]] = h.Index
				if _, ok := env[kv[0]]; !ok || len(f.Env) == 0 {
					env[kv[0]] = kv[1]
				}
			}
		}
	}
	switch {
	case len(f.History) == 0:
		a.notes = append(a.notes, "the image config has no history (distroless, ko, bazel or squashed build): judged by its environment and size only")
	case recognised == 0:
		a.notes = append(a.notes, fmt.Sprintf("the history holds no Dockerfile steps (created by %q): judged by its environment and size only", shorten(f.History[0].CreatedBy, "", 40)))
	}
	a.versions = versions(env)

	node := &nodeState{}
	for i, st := range a.steps {
		if stopped(done) {
			a.unread = len(a.steps) - i
			break
		}
		a.step(st, env, node)
	}
	a.envHits(env, envIndex)
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
	case "ADD":
		a.hits = append(a.hits, a.downloads(st)...)
		a.copyInto(st)
	case "WORKDIR":
		if dir := strings.TrimSpace(st.args); dir != "" && !strings.Contains(dir, "$") {
			if !strings.HasPrefix(dir, "/") {
				dir = a.workdir + "/" + dir
			}
			a.workdir = path.Clean(dir)
		}
	case "COPY":
		a.copyInto(st)
	case "CMD", "ENTRYPOINT":
		if jshellCmd.MatchString(st.args) {
			a.add(hit{rule: RuleToolchainJDK, strength: weak, index: st.Index, needle: "jshell", what: "default command is jshell"})
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

// downloads finds the toolchains a step fetches by URL or file name.
func (a *analysis) downloads(st step) []hit {
	var hits []hit
	for _, d := range downloads {
		m := d.re.FindString(st.args)
		if m == "" || (d.unless != "" && strings.Contains(st.args, d.unless)) {
			continue
		}
		what := "downloads " + fileName(st.args, m)
		if strings.HasSuffix(m, ".sh") {
			what = "runs " + m
		}
		hits = append(hits, hit{rule: d.rule, strength: strong, index: st.Index, needle: m, what: what, sig: d})
	}
	return hits
}

var (
	goRootPath = regexp.MustCompile(`(^|\s)/usr/local/go(/|\s|$)`)
	jshellCmd  = regexp.MustCompile(`(^|["/\s\[])jshell(["\s\]]|$)`)
	majorMinor = regexp.MustCompile(`\d+\.\d+`)
	major      = regexp.MustCompile(`\d+`)
	javaLegacy = regexp.MustCompile(`^1\.(\d+)`)
)

// copyInto flags toolchains copied in from another image.
func (a *analysis) copyInto(st step) {
	if goRootPath.MatchString(st.args) {
		a.add(hit{rule: RuleToolchainGo, strength: strong, index: st.Index, needle: "/usr/local/go", what: "copies /usr/local/go"})
	}
}

// script runs the command detectors over one RUN step; dl are the
// downloads its text shows.
func (a *analysis) script(st step, env map[string]string, node *nodeState, dl []hit) {
	var (
		pkgs   pkgState
		builds []hit
		nodeIn []hit
		nodeBd []hit
		cands  []*downloadSignal
	)
	for _, h := range dl {
		cands = append(cands, h.sig)
	}
	sh := newShellReader(env, st.buildArgs)
	fs := newFSState(a.workdir, cands)
	sh.observe = func(c command) {
		fs.observe(c, func(k string) (string, bool) {
			if v, ok := c.assigns[k]; ok {
				return v, true
			}
			return sh.lookup(k)
		})
	}
	for _, c := range sh.commands(st.args) {
		pkgs.observe(c)
		h := hit{index: st.Index, strength: strong, needle: c.name}
		switch c.name {
		case "go":
			if sub := firstOperand(c.args); sub == "build" || sub == "install" {
				h.rule, h.needle = RuleBuildGo, "go "+sub
				builds = append(builds, h.runs(c))
			}
		case "mvn", "mvnw":
			if hasArg(c.args, "package", "install", "verify", "deploy") {
				h.rule = RuleBuildMaven
				builds = append(builds, h.runs(c))
			}
		case "gradle", "gradlew":
			for _, t := range c.args {
				t = t[strings.LastIndex(t, ":")+1:]
				if slices.Contains([]string{"build", "assemble", "bootJar", "bootWar", "installDist", "shadowJar", "jar", "war"}, t) {
					h.rule = RuleBuildGradle
					builds = append(builds, h.runs(c))
					break
				}
			}
		case "cargo":
			if sub := firstOperand(c.args); sub == "build" || sub == "install" {
				h.rule = RuleBuildCargo
				builds = append(builds, h.runs(c))
			}
		case "npm", "pnpm", "yarn":
			if r := jsBuild(c); r != "" {
				h.rule = r
				builds = append(builds, h.runs(c))
				nodeBd = append(nodeBd, h.runs(c))
			}
			if jsDevInstall(c, env) {
				nodeIn = append(nodeIn, h.runs(c))
			}
		case "npx", "tsc", "webpack", "vite", "ng", "next", "nest", "rollup", "esbuild":
			if bundler(c) {
				nodeBd = append(nodeBd, h.runs(c))
			}
		case "dotnet":
			if sub := firstOperand(c.args); sub == "publish" || sub == "build" {
				h.rule = RuleBuildDotnet
				builds = append(builds, h.runs(c))
			}
		case "make", "gmake":
			h.rule = RuleBuildMake
			builds = append(builds, h.runs(c))
		case "gcc", "g++", "cc", "c++", "clang", "clang++":
			h.rule = RuleBuildCC
			builds = append(builds, h.runs(c))
		case "javac":
			if versionCheck(c.args) {
				h.rule, h.strength, h.what = RuleToolchainJDK, moderate, "runs javac "+strings.Join(c.args, " ")
				a.add(h)
			} else {
				h.rule = RuleBuildJavac
				builds = append(builds, h.runs(c))
				a.add(hit{rule: RuleToolchainJDK, strength: moderate, index: st.Index, needle: "javac", what: "runs javac"})
			}
		case "jshell", "jlink":
			h.rule, h.strength = RuleToolchainJDK, moderate
			a.add(h.runs(c))
		}
	}
	for _, why := range sh.limits {
		a.cut(st.Index, why)
	}
	if pkgs.overBudget() {
		a.cut(st.Index, fmt.Sprintf("package removals past %d checks were not credited", maxPkgWork))
	}
	// A toolchain fetched into a folder the step deletes again leaves
	// nothing in its layer.
	cleared := false
	var kept []hit
	for _, h := range dl {
		if fs.cleared(h.sig) {
			cleared = true
			continue
		}
		kept = append(kept, h)
	}
	a.hits = append(a.hits, kept...)
	// Official runtime images build from source with dependencies (or a
	// toolchain) they remove again in the same step: nothing of such a
	// build is shipped.
	if !pkgs.selfCleaning() && !(cleared && len(kept) == 0 && !pkgs.keepsToolchain()) {
		a.hits = append(a.hits, builds...)
		node.installs = append(node.installs, nodeIn...)
		node.builds = append(node.builds, nodeBd...)
	}
	// The toolchain packages the step installed and did not remove ship
	// in its layer, whatever else it removed.
	for _, pr := range pkgRules {
		var names []string
		seen := map[string]bool{}
		manager := ""
		for _, ip := range pkgs.installed {
			if !ip.removed && ip.rule == pr.rule && ip.weak == pr.weak && !seen[ip.name] {
				seen[ip.name] = true
				names = append(names, ip.name)
				manager = ip.manager
			}
		}
		if len(names) > 0 {
			strength := strong
			if pr.weak {
				strength = weak
			}
			a.add(hit{rule: pr.rule, strength: strength, index: st.Index, needle: names[0],
				what: shorten(manager+" installs "+strings.Join(names, ", "), "", 60)})
		}
	}
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

// jsBuild recognises "npm run build", "yarn build", "pnpm run build:prod".
func jsBuild(c command) string {
	sub := firstOperand(c.args)
	script := sub
	if sub == "run" || sub == "run-script" {
		rest := c.args[slices.Index(c.args, sub)+1:]
		script = firstOperand(rest)
	} else if c.name == "npm" {
		return ""
	}
	if script != "build" && !strings.HasPrefix(script, "build:") {
		return ""
	}
	if c.name == "yarn" {
		return RuleBuildYarn
	}
	return RuleBuildNpm
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

// envHits turns toolchain environment variables into hits, pointing at the
// step that most likely installed what the variable announces.
func (a *analysis) envHits(env map[string]string, envIndex map[string]int) {
	for _, er := range envRules {
		v, ok := env[er.key]
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		h := hit{rule: er.rule, strength: moderate, index: -1, env: er.key + "=" + v, needle: er.key,
			what: "ENV " + shorten(er.key+"="+v, "", 50)}
		if i, ok := envIndex[er.key]; ok {
			h.index = i
			if inst := a.installStep(i, er.hints); inst >= 0 {
				h.related = []int{inst}
			}
		}
		a.add(h)
	}
	if p := env["PATH"]; strings.Contains(p, "/usr/local/go/bin") {
		h := hit{rule: RuleToolchainGo, strength: moderate, index: -1, env: "PATH=" + p, needle: "/usr/local/go",
			what: "/usr/local/go/bin in PATH"}
		if i, ok := envIndex["PATH"]; ok {
			h.index = i
			if inst := a.installStep(i, []string{"/usr/local/go", "golang", "go.dev/dl"}); inst >= 0 {
				h.related = []int{inst}
			}
		}
		a.add(h)
	}
}

// installStep finds the first layer-adding step after an ENV line whose
// line names one of hints, else the first layer-adding RUN, COPY or ADD
// right after it.
func (a *analysis) installStep(after int, hints []string) int {
	first := -1
	for _, st := range a.steps {
		if st.Index <= after || st.EmptyLayer {
			continue
		}
		if st.keyword != "RUN" && st.keyword != "COPY" && st.keyword != "ADD" {
			continue
		}
		if first < 0 {
			first = st.Index
		}
		low := strings.ToLower(st.CreatedBy)
		for _, h := range hints {
			if strings.Contains(low, h) {
				return st.Index
			}
		}
	}
	return first
}

// versions reads the toolchain versions an image declares, for remedies.
func versions(env map[string]string) map[string]string {
	v := map[string]string{}
	if s := majorMinor.FindString(env["GOLANG_VERSION"]); s != "" {
		v["go"] = s
	}
	if s := major.FindString(env["JAVA_VERSION"]); s != "" {
		if s == "1" {
			// "1.8.0_322" style.
			if m := javaLegacy.FindStringSubmatch(env["JAVA_VERSION"]); m != nil {
				s = m[1]
			}
		}
		v["java"] = s
	}
	for _, k := range []string{"DOTNET_SDK_VERSION", "DOTNET_VERSION"} {
		if s := majorMinor.FindString(env[k]); s != "" {
			v["dotnet"] = s
			break
		}
	}
	if s := major.FindString(env["NODE_VERSION"]); s != "" {
		v["node"] = s
	}
	if s := majorMinor.FindString(env["RUST_VERSION"]); s != "" {
		v["rust"] = s
	}
	return v
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
