package policy

import (
	"strings"
)

// pkgState follows what the package managers of one RUN step install and
// remove, in order. A package installed and removed again in the same step
// leaves nothing in the step's layer; one removed in a later step still
// ships in this step's layer.
type pkgState struct {
	installed []installedPkg
	// installs and removals count the operations seen.
	installs, removals int
	// markedAuto is set by "apt-mark auto" (the savedAptMark idiom): a later
	// "apt-get purge --auto-remove" removes everything this step installed.
	markedAuto bool
}

type installedPkg struct {
	name    string // normalised: lower case, no version or arch
	manager string // apt-get, apk, dnf, ...
	group   string // apk --virtual name
}

// selfCleaning reports whether the step installed packages and removed
// packages again: the "install build deps, build, purge" idiom of official
// runtime images, whose build commands are not findings.
func (p *pkgState) selfCleaning() bool { return p.installs > 0 && p.removals > 0 }

// observe updates the state with one command.
func (p *pkgState) observe(c command) {
	switch c.name {
	case "apt-get", "apt", "aptitude":
		p.apt(c)
	case "apt-mark":
		if firstOperand(c.args) == "auto" {
			p.markedAuto = true
		}
	case "apk":
		p.apk(c)
	case "yum", "dnf", "microdnf", "tdnf":
		p.rpm(c)
	case "zypper":
		p.zypper(c)
	case "dpkg":
		for i, a := range c.args {
			if a == "-r" || a == "-P" || a == "--purge" || a == "--remove" {
				p.remove(c.name, operands(c.args[i+1:], nil))
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
	case "remove", "purge", "autoremove":
		if p.markedAuto && (sub == "autoremove" || hasArg(c.args, "--auto-remove", "--autoremove")) {
			p.removeAll(c.name)
			return
		}
		p.remove(c.name, operands(rest, aptValueOpts))
	}
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
		p.remove(c.name, operands(rest, apkValueOpts))
	}
}

var rpmValueOpts = map[string]bool{"--setopt": true, "--enablerepo": true, "--disablerepo": true, "-x": true, "--exclude": true, "--installroot": true, "--releasever": true, "--repo": true}

func (p *pkgState) rpm(c command) {
	sub, rest := subcommand(c.args, rpmValueOpts)
	if sub == "group" || sub == "module" {
		sub, rest = subcommand(rest, rpmValueOpts)
		if sub == "install" {
			sub = "groupinstall"
		}
	}
	switch sub {
	case "install", "reinstall":
		p.install(c.name, operands(rest, rpmValueOpts), "")
	case "groupinstall":
		names := operands(rest, rpmValueOpts)
		for i, n := range names {
			names[i] = "@" + strings.TrimPrefix(n, "@")
		}
		p.install(c.name, names, "")
	case "remove", "erase", "autoremove":
		p.remove(c.name, operands(rest, rpmValueOpts))
	case "history":
		if firstOperand(rest) == "undo" || firstOperand(rest) == "rollback" {
			p.removeAll(c.name)
		}
	}
}

func (p *pkgState) zypper(c command) {
	sub, rest := subcommand(c.args, map[string]bool{"--root": true, "-R": true})
	switch sub {
	case "install", "in":
		p.install(c.name, operands(rest, nil), "")
	case "remove", "rm":
		p.remove(c.name, operands(rest, nil))
	}
}

func (p *pkgState) install(manager string, names []string, group string) {
	p.installs++
	for _, n := range names {
		if n = normalisePkg(n); n != "" {
			p.installed = append(p.installed, installedPkg{name: n, manager: manager, group: group})
		}
	}
}

func (p *pkgState) remove(manager string, names []string) {
	p.removals++
	gone := map[string]bool{}
	for _, n := range names {
		gone[normalisePkg(n)] = true
		gone[n] = true
	}
	kept := p.installed[:0]
	for _, ip := range p.installed {
		if gone[ip.name] || (ip.group != "" && gone[ip.group]) {
			continue
		}
		kept = append(kept, ip)
	}
	p.installed = kept
}

func (p *pkgState) removeAll(manager string) {
	p.removals++
	kept := p.installed[:0]
	for _, ip := range p.installed {
		if !samePkgFamily(ip.manager, manager) {
			kept = append(kept, ip)
		}
	}
	p.installed = kept
}

func samePkgFamily(a, b string) bool {
	family := func(m string) string {
		switch m {
		case "apt-get", "apt", "aptitude", "dpkg":
			return "deb"
		case "yum", "dnf", "microdnf", "tdnf":
			return "rpm"
		}
		return m
	}
	return family(a) == family(b)
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
