package policy

import (
	"path"
	"regexp"
	"strings"
)

// maxPkgWork bounds the package records one step's removals and marks
// may visit. Past it, later removals are not credited: the step keeps what
// it installed, so the bound can only add findings, never hide one.
const maxPkgWork = 1 << 20

// pkgState follows what the package managers of one RUN step install,
// mark and remove, in order. A package installed and removed again in the
// same step leaves nothing in the step's layer; one removed in a later step
// still ships in this step's layer.
type pkgState struct {
	det *detector
	// scratch is the literal index's space, one flag per package pattern.
	scratch []bool
	// step is the history index of the step being read; files are the
	// package files (.deb, .rpm, .apk) its commands name, for installs by
	// path.
	step  int
	files []string
	// installed holds the packages of every step read so far.
	installed []installedPkg
	// txs counts the install and remove commands seen; rpmLast is the
	// latest of the rpm tools, for "history undo last".
	txs, rpmLast int
	// work counts the records visited by removals and marks.
	work int
}

type installedPkg struct {
	name    string // normalised: lower case, no version or arch
	manager string // apt-get, apk, dnf, ...
	group   string // apk --virtual name
	// rule is the toolchain rule the package belongs to, or "".
	rule string
	// weak is set for a package that only corroborates its rule (make
	// for a C toolchain): keeping it keeps no toolchain.
	weak bool
	// tx is the install command that added it.
	tx int
	// auto is set when the package is marked as installed automatically
	// (apt-mark auto, dnf mark remove): an autoremove removes it.
	auto bool
	// depsLeft is set when apt or dpkg removed the package by name without
	// an autoremove: what it pulled in stays (the compiler a metapackage
	// such as gcc or build-essential depends on), so it counts as
	// installed until an autoremove.
	depsLeft bool
	removed  bool
	// step is the step that installed it, removedBy the one that removed
	// it.
	step, removedBy int
}

// begin starts reading a step.
func (p *pkgState) begin(step int) {
	p.step = step
	p.files = nil
	p.work = 0
}

// selfCleaning reports whether the step removed what it installed: at
// least one package installed in the step is gone, no toolchain package it
// installed remains, and either it installed one (the "install build deps,
// build, purge" idiom of official runtime images) or nothing it installed
// remains (a build with an earlier step's compiler that removes its own
// build dependencies). Removing a package the step did not install, or an
// autoremove that spares the packages named on the command line, covers
// nothing. Packages that only corroborate a toolchain (make) may stay: a
// step that keeps make but purges its compiler keeps no toolchain.
func (p *pkgState) selfCleaning() bool {
	removed, kept, toolchain := 0, 0, false
	for _, ip := range p.installed {
		if ip.step != p.step {
			continue
		}
		if !ip.removed {
			if p.keeps(ip) {
				return false
			}
			kept++
			continue
		}
		removed++
		toolchain = toolchain || (ip.rule != "" && !ip.weak)
	}
	return removed > 0 && (toolchain || kept == 0)
}

// keeps reports whether a package left installed is a toolchain.
func (p *pkgState) keeps(ip installedPkg) bool { return ip.rule != "" && !ip.weak }

// keepsToolchain reports whether a toolchain package the step installed
// remains.
func (p *pkgState) keepsToolchain() bool {
	for _, ip := range p.installed {
		if ip.step == p.step && !ip.removed && p.keeps(ip) {
			return true
		}
	}
	return false
}

// overBudget reports whether removals went uncredited for want of work.
func (p *pkgState) overBudget() bool { return p.work > maxPkgWork }

// observe updates the state with one command.
func (p *pkgState) observe(c command) {
	switch c.name {
	case "apt-get", "apt", "aptitude":
		p.apt(c)
	case "apt-mark":
		p.aptMark(c)
	case "apk":
		p.apk(c)
	case "yum", "dnf", "microdnf", "tdnf":
		p.rpm(c)
	case "zypper":
		p.zypper(c)
	case "dpkg":
		for i, a := range c.args {
			switch a {
			case "-r", "-P", "--purge", "--remove":
				p.remove(c.name, c.args[i+1:], nil)
				return
			case "-i", "--install":
				p.install(c.name, operands(c.args[i+1:], nil), "")
				return
			}
		}
	case "rpm":
		for _, a := range c.args {
			if a == "--install" || a == "--upgrade" || (strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.ContainsAny(a, "iU")) {
				p.install("yum", operands(c.args, nil), "")
				return
			}
		}
	}
}

// aptValueOpts are apt-get options that take a separate value.
var aptValueOpts = map[string]bool{"-o": true, "-t": true, "-c": true, "--target-release": true, "--option": true, "--config-file": true}

func (p *pkgState) apt(c command) {
	sub, rest := subcommand(c.args, aptValueOpts)
	switch sub {
	case "install", "reinstall":
		p.install(c.name, operands(rest, aptValueOpts), "")
	case "build-dep":
		// Build dependencies always include the compiler.
		p.install(c.name, []string{"build-essential"}, "")
	case "remove", "purge":
		p.remove(c.name, rest, aptValueOpts)
		if hasArg(c.args, "--auto-remove", "--autoremove") {
			p.autoRemove(c.name)
		}
	case "autoremove", "autopurge":
		// Removes what is marked automatically installed, never the
		// packages named on an install command line.
		p.remove(c.name, rest, aptValueOpts)
		p.autoRemove(c.name)
	}
}

// aptMark follows "apt-mark auto" and "apt-mark manual", also fed by a
// pipe through xargs: the savedAptMark idiom marks everything auto, then
// the packages to keep manual again.
func (p *pkgState) aptMark(c command) {
	sub, rest := subcommand(c.args, nil)
	auto := sub == "auto" || sub == "markauto"
	if !auto && sub != "manual" && sub != "unmarkauto" {
		return
	}
	names := operands(rest, nil)
	if c.xargs {
		src, ok := pipeSource(c)
		switch {
		case !ok:
		case auto && src.filtered:
			// "apt-mark showmanual | grep -v gcc | xargs apt-mark auto":
			// what reaches apt-mark is unknown, so nothing is marked.
		case auto && src.showManual:
			// Every package installed by name was manual.
			names = append(names, ".*")
		default:
			// For manual, a filter can only narrow what echo printed:
			// keeping all of it errs towards a finding.
			names = append(names, src.words...)
		}
	}
	p.mark(c.name, names, auto)
}

// fedBy is what a pipe feeds a command run by xargs.
type fedBy struct {
	words      []string // printed by an echo or printf
	showManual bool     // "apt-mark showmanual"
	// filtered is true when commands between the source and xargs (grep,
	// sort) may have changed what passes.
	filtered bool
}

// pipeSource follows a command's pipe back to an echo, printf or
// "apt-mark showmanual" that feeds it.
func pipeSource(c command) (fedBy, bool) {
	var src fedBy
	up := c.stdin
	for hops := 0; up != nil && hops < maxPipeHops; hops++ {
		switch {
		case up.name == "echo" || up.name == "printf":
			src.words = up.args
			return src, true
		case up.name == "apt-mark" && firstOperand(up.args) == "showmanual":
			src.showManual = true
			return src, true
		}
		src.filtered = true
		up = up.stdin
	}
	return src, false
}

var apkValueOpts = map[string]bool{"-t": true, "--virtual": true, "-X": true, "--repository": true, "-p": true, "--root": true, "--arch": true, "--keys-dir": true, "--repositories-file": true, "--cache-dir": true}

func (p *pkgState) apk(c command) {
	sub, rest := subcommand(c.args, apkValueOpts)
	switch sub {
	case "add":
		group := ""
		for i := 0; i+1 < len(rest); i++ {
			if rest[i] == "--virtual" || rest[i] == "-t" {
				group = rest[i+1]
			}
		}
		for _, a := range rest {
			if g, ok := strings.CutPrefix(a, "--virtual="); ok {
				group = g
			}
		}
		p.install(c.name, operands(rest, apkValueOpts), group)
	case "del":
		p.remove(c.name, rest, apkValueOpts)
	}
}

var rpmValueOpts = map[string]bool{"--setopt": true, "--enablerepo": true, "--disablerepo": true, "-x": true, "--exclude": true, "--installroot": true, "--releasever": true, "--repo": true}

func (p *pkgState) rpm(c command) {
	sub, rest := subcommand(c.args, rpmValueOpts)
	switch sub {
	case "group", "module":
		sub, rest = subcommand(rest, rpmValueOpts)
		switch sub {
		case "install":
			sub = "groupinstall"
		case "remove", "erase":
			sub = "groupremove"
		}
	case "mark":
		// dnf 4 "mark remove", dnf 5 "mark dependency": no longer
		// user-installed, so an autoremove takes it.
		sub, rest = subcommand(rest, rpmValueOpts)
		p.mark(c.name, operands(rest, rpmValueOpts), sub == "remove" || sub == "dependency")
		return
	}
	switch sub {
	case "install", "reinstall":
		p.install(c.name, operands(rest, rpmValueOpts), "")
	case "groupinstall":
		p.install(c.name, groupNames(operands(rest, rpmValueOpts)), "")
	case "remove", "erase":
		p.remove(c.name, rest, rpmValueOpts)
	case "groupremove":
		p.remove(c.name, groupNames(operands(rest, rpmValueOpts)), nil)
	case "autoremove":
		p.remove(c.name, rest, rpmValueOpts)
		p.autoRemove(c.name)
	case "history":
		// "undo last" undoes the last transaction; undoing or rolling back
		// to a numbered one depends on history this step cannot see, so
		// it is not credited.
		ops := operands(rest, rpmValueOpts)
		if len(ops) == 2 && ops[0] == "undo" && ops[1] == "last" {
			p.undoLast(c.name)
		}
	}
}

// groupNames spells rpm group names as installs record them: "@name".
func groupNames(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "@" + strings.TrimPrefix(n, "@")
	}
	return out
}

func (p *pkgState) zypper(c command) {
	sub, rest := subcommand(c.args, map[string]bool{"--root": true, "-R": true})
	switch sub {
	case "install", "in":
		p.install(c.name, operands(rest, nil), "")
	case "remove", "rm":
		p.remove(c.name, rest, nil)
	}
}

func (p *pkgState) install(manager string, names []string, group string) {
	tx := p.transaction(manager)
	for _, n := range names {
		for _, name := range p.installedNames(n) {
			ip := installedPkg{name: name, manager: manager, group: group, tx: tx, step: p.step, removedBy: -1}
			if p.det == nil {
				p.det = builtin()
				p.scratch = make([]bool, len(p.det.pkgPatterns))
			}
			sigs := p.det.packageRules(name, p.scratch)
			if len(sigs) == 0 {
				p.installed = append(p.installed, ip)
			}
			// One record per rule the package belongs to.
			for _, sig := range sigs {
				ip.rule, ip.weak = sig.rule, sig.strength < moderate
				p.installed = append(p.installed, ip)
			}
		}
	}
}

// packageFile matches the file name of a package: name_version_arch.deb,
// name-version-release.arch.rpm, name-version-rN.apk.
var packageFile = regexp.MustCompile(`\.(deb|rpm|apk)$`)

// installedNames returns the package names an install operand stands for:
// the name itself, or, for a package file or a glob of them ("./x.deb",
// "$DIR/*.rpm"), the names of the matching package files the step names.
func (p *pkgState) installedNames(op string) []string {
	if !strings.Contains(op, "/") && !packageFile.MatchString(op) {
		if n := normalisePkg(op); n != "" {
			return []string{n}
		}
		return nil
	}
	base := path.Base(op)
	files := []string{op}
	if strings.ContainsAny(base, "*?[") {
		files = nil
		for _, f := range p.files {
			if ok, _ := path.Match(base, path.Base(f)); ok {
				files = append(files, f)
			}
		}
	}
	var out []string
	for _, f := range files {
		if n := packageFileName(path.Base(f)); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// packageFileName reads the package name out of a package file name.
func packageFileName(file string) string {
	m := packageFile.FindStringSubmatch(file)
	if m == nil {
		return ""
	}
	s := strings.ToLower(strings.TrimSuffix(file, m[0]))
	if m[1] == "deb" {
		s, _, _ = strings.Cut(s, "_")
		return s
	}
	if i := strings.IndexByte(s, '$'); i > 0 {
		// A variable the reader does not know: "java-17-devel-$version"
		// stands for the version, ".$(rpm -q ...)" for the architecture.
		if s = s[:i]; strings.HasSuffix(s, "-") {
			return strings.TrimSuffix(s, "-")
		}
		s = strings.TrimSuffix(s, ".")
	}
	// name-version-release: version and release hold no dash.
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return ""
		}
		s = s[:i]
	}
	return s
}

// packageFiles lists the package files the commands of a step name.
func packageFiles(cmds []command) []string {
	var out []string
	for _, c := range cmds {
		for _, w := range append([]string{c.name}, c.args...) {
			if packageFile.MatchString(w) && len(out) < maxPackageFiles {
				out = append(out, w)
			}
		}
	}
	return out
}

// maxPackageFiles bounds the package files followed in one step.
const maxPackageFiles = 256

// transaction numbers a package manager command that changes packages.
func (p *pkgState) transaction(manager string) int {
	p.txs++
	if pkgFamily(manager) == "rpm" {
		p.rpmLast = p.txs
	}
	return p.txs
}

// remove removes the installed packages of the manager's family that args
// name: by name, by apk --virtual group, or by pattern (a regular
// expression for apt, a glob for rpm and zypper, as those tools read
// them). An apk package added in a group stays until its group goes.
func (p *pkgState) remove(manager string, args []string, valueOpts map[string]bool) {
	p.transaction(manager)
	names := operands(args, valueOpts)
	if len(names) == 0 {
		return
	}
	match, cost := pkgMatcher(manager, names, false)
	p.visit(manager, cost, func(ip *installedPkg) {
		key := ip.name
		if manager == "apk" && ip.group != "" {
			key = ip.group
		}
		if pkgFamily(manager) == "deb" && p.keeps(*ip) {
			ip.depsLeft = ip.depsLeft || match(key)
			return
		}
		p.setRemoved(ip, match(key))
	})
}

// setRemoved marks a package removed by the current step.
func (p *pkgState) setRemoved(ip *installedPkg, gone bool) {
	if gone {
		ip.removed, ip.removedBy = true, p.step
	}
}

// autoRemove removes what the family's marks made automatically installed,
// and what toolchain packages removed by name (in any step) left behind.
func (p *pkgState) autoRemove(manager string) {
	p.removeWhere(manager, func(ip installedPkg) bool { return ip.auto })
	p.visit(manager, 1, func(ip *installedPkg) { p.setRemoved(ip, ip.depsLeft) })
}

// undoLast removes what the last rpm transaction installed: nothing when
// it was a removal.
func (p *pkgState) undoLast(manager string) {
	last := p.rpmLast
	p.removeWhere(manager, func(ip installedPkg) bool { return ip.tx == last })
}

// mark sets or clears the auto mark of the family's packages that names
// match.
func (p *pkgState) mark(manager string, names []string, auto bool) {
	if len(names) == 0 {
		return
	}
	// A pattern not understood marks nothing auto and everything manual.
	match, cost := pkgMatcher(manager, names, !auto)
	p.visit(manager, cost, func(ip *installedPkg) {
		if ip.step == p.step && match(ip.name) {
			ip.auto = auto
		}
	})
}

// removeWhere removes, of the packages the current step installed, those
// gone says: marks and autoremoves of a later step are not credited with
// removing an earlier step's packages ("apt-mark auto '.*'" there is
// undone by the savedAptMark it restores, which the reader cannot see).
func (p *pkgState) removeWhere(manager string, gone func(installedPkg) bool) {
	p.visit(manager, 1, func(ip *installedPkg) { p.setRemoved(ip, ip.step == p.step && gone(*ip)) })
}

// visit calls f on the packages of the manager's family still installed,
// charging cost per package to the work budget; once the budget is spent
// it calls nothing.
func (p *pkgState) visit(manager string, cost int, f func(*installedPkg)) {
	if p.overBudget() {
		return
	}
	p.work += len(p.installed) * cost
	if p.overBudget() {
		return
	}
	for i := range p.installed {
		ip := &p.installed[i]
		if !ip.removed && samePkgFamily(ip.manager, manager) {
			f(ip)
		}
	}
}

// pkgMatcher matches package names against a command's operands: names as
// given and normalised, and patterns where the manager reads them (apt:
// unanchored regular expressions with *, ? or [; rpm and zypper: globs).
// A pattern it cannot read (an apt search pattern such as "?installed", a
// pattern that does not compile) matches what unread says: callers pass
// the answer that errs towards a finding. cost is the work of one match,
// in the units of the work budget.
func pkgMatcher(manager string, names []string, unread bool) (match func(string) bool, cost int) {
	exact := map[string]bool{}
	var (
		res   []*regexp.Regexp
		globs []string
		other bool // a pattern that could not be read
		all   bool // a pattern that matches every name
	)
	for _, n := range names {
		low := strings.ToLower(n)
		exact[low] = true
		exact[normalisePkg(n)] = true
		if !strings.ContainsAny(low, "*?[~") {
			continue
		}
		switch pkgFamily(manager) {
		case "deb":
			if low == ".*" {
				// The savedAptMark idiom's "apt-mark auto '.*'".
				all = true
				continue
			}
			re, err := regexp.Compile(low)
			switch {
			case strings.HasPrefix(low, "?") || strings.HasPrefix(low, "~") || err != nil:
				other = true
			case strings.ContainsAny(low, "*?["):
				res = append(res, re)
			}
		case "rpm", "zypper":
			if _, err := path.Match(low, ""); err != nil {
				other = true
				continue
			}
			globs = append(globs, low)
		}
	}
	delete(exact, "")
	match = func(name string) bool {
		if all || exact[name] || (other && unread) {
			return true
		}
		for _, re := range res {
			if re.MatchString(name) {
				return true
			}
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}
	return match, 1 + len(res) + len(globs)
}

func samePkgFamily(a, b string) bool { return pkgFamily(a) == pkgFamily(b) }

// pkgFamily groups the tools that manage the same package database.
func pkgFamily(m string) string {
	switch m {
	case "apt-get", "apt", "aptitude", "dpkg", "apt-mark":
		return "deb"
	case "yum", "dnf", "microdnf", "tdnf":
		return "rpm"
	}
	return m
}

// subcommand returns the first operand (apt-get's "install", apk's "add")
// and the arguments after it.
func subcommand(args []string, valueOpts map[string]bool) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if valueOpts[a] {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		return a, args[i+1:]
	}
	return "", nil
}

// operands drops options (and the values of those that take one).
func operands(args []string, valueOpts map[string]bool) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if valueOpts[a] {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") || a == "" {
			continue
		}
		out = append(out, a)
	}
	return out
}

func hasArg(args []string, want ...string) bool {
	for _, a := range args {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// normalisePkg lower-cases a package spec and drops versions, release
// pins and architectures: "gcc=4:12.2-1", "make>4", "gcc:amd64" -> the name.
func normalisePkg(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(s, "@") {
		return s
	}
	if i := strings.IndexAny(s, "=<>~:"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "/"); i >= 0 && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, ".") {
		// "gcc/bookworm-backports" names a release.
		s = s[:i]
	}
	if i := strings.Index(s, "$"); i >= 0 {
		// An unknown variable: keep the literal part ("java-17-devel-$v").
		s = s[:i]
	}
	if strings.ContainsAny(s, "*/") {
		return ""
	}
	return s
}
