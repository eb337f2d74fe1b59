package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// This file follows, through the commands of one RUN step, where the files
// of a fetched toolchain go: the archive a download writes, the folder it
// is unpacked into, where parts of it are moved or copied, what an
// installer it runs writes, and what the step deletes again. A toolchain
// whose every place is deleted before the step ends leaves nothing in the
// step's layer. Whatever the reader cannot follow (an unknown variable, an
// installer that writes where it likes, "make install" run from inside the
// unpacked folder) keeps the toolchain: the analysis errs towards a
// finding.

// place is where part of a toolchain lies.
type place struct {
	// path is absolute and clean.
	path string
	// contents is set when the toolchain's files are the unknown entries
	// of the folder path (an archive unpacked into it), not path itself.
	contents bool
}

// under reports whether p lies within the folder dir (or is dir).
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// Bounds of the lifecycle: history lines are written by the image's
// author, so the places followed are bounded; past a bound a toolchain is
// taken to stay (errs towards a finding) and the limit is noted.
const (
	maxArtifacts = 64
	maxPlaces    = 64
)

// artifact is one toolchain fetched or put in place by a step, and where
// its files went.
type artifact struct {
	rule string
	// sig is the signal that recognised a download, path the one that
	// recognised a file put at a toolchain's path (needle is that path).
	sig    *downloadSignal
	path   *pathSignal
	needle string
	// goneAt is the step that deleted its last place, or -1.
	goneAt int
	// places are where its files are now.
	places []place
	// escaped is set once its files went somewhere the reader cannot
	// follow: they remain in the image.
	escaped bool
	// piped is set while the download is written to standard output and
	// no command of the pipe has been seen to read it.
	piped bool
}

// gone reports whether nothing of the artifact remains.
func (a *artifact) gone() bool { return !a.escaped && !a.piped && len(a.places) == 0 }

func (a *artifact) add(p place) {
	if strings.Contains(p.path, "$") || p.path == "" || len(a.places) >= maxPlaces {
		a.escaped = true
		return
	}
	a.places = append(a.places, p)
}

// holds reports whether the file p belongs to the artifact.
func (a *artifact) holds(p string) bool {
	for _, pl := range a.places {
		if under(p, pl.path) {
			return true
		}
	}
	return false
}

// isFile reports whether p is a file the artifact was written to (the
// downloaded installer itself).
func (a *artifact) isFile(p string) bool {
	for _, pl := range a.places {
		if pl.path == p && !pl.contents {
			return true
		}
	}
	return false
}

// fsState is the lifecycle of one step: the working directory and the
// artifacts fetched so far.
type fsState struct {
	cwd   string
	stack []string // pushd
	home  string
	arts  []*artifact
	// prev are the artifacts the command before wrote to its output, for
	// a pipe into tar or a shell.
	prev []*artifact
	// det finds download signals in the URLs and archive names the
	// commands name once their variables are expanded; seen is its
	// scratch space.
	det  *detector
	seen []bool
	// text is the step's script, for the signals' unless.
	text string
	// paths are the catalog's path signals, for files put in place.
	paths []*pathSignal
	// earlier are the installs of earlier steps still in the image: this
	// step's rm may delete them.
	earlier []liveArtifact
	// step is the history index of the step.
	step int
	// limits says, once each, what was not followed; overflow is set
	// once a download went unfollowed, so none counts as deleted.
	limits   []string
	overflow bool
}

func newFSState(workdir string, det *detector, seen []bool, earlier []liveArtifact) *fsState {
	if workdir == "" {
		workdir = "/"
	}
	return &fsState{cwd: workdir, home: "/root", det: det, seen: seen, paths: det.paths, earlier: earlier}
}

// signalsIn returns the download signals that match s.
func (s *fsState) signalsIn(str string) []*downloadSignal {
	clear(s.seen)
	if !s.det.dlIndex.candidates(str, s.seen) {
		return nil
	}
	var out []*downloadSignal
	for i, sig := range s.det.downloads {
		if s.seen[i] && sig.re.MatchString(str) && (sig.unless == "" || !strings.Contains(s.text, sig.unless)) {
			out = append(out, sig)
		}
	}
	return out
}

// newArtifact starts following an artifact, or returns nil past the bound.
func (s *fsState) newArtifact(art *artifact) *artifact {
	if len(s.arts) >= maxArtifacts {
		s.overflow = true
		why := fmt.Sprintf("files of more than %d downloads were not followed", maxArtifacts)
		if !slices.Contains(s.limits, why) {
			s.limits = append(s.limits, why)
		}
		return nil
	}
	art.goneAt = -1
	s.arts = append(s.arts, art)
	return art
}

// putAt records a file put at dest (from src, when copied or linked): a
// toolchain's path when a path signal matches it.
func (s *fsState) putAt(dest, src string) {
	if len(s.paths) == 0 || strings.Contains(dest, "$") {
		return
	}
	cands := []string{dest}
	if src != "" {
		cands = append(cands, path.Join(dest, path.Base(src)))
	}
	for _, sig := range s.paths {
		for _, p := range cands {
			if pathMatches(sig.g, p) {
				if art := s.newArtifact(&artifact{rule: sig.rule, path: sig, needle: p}); art != nil {
					art.add(place{path: p})
				}
				break
			}
		}
	}
}

// abs resolves a path against the working directory. Paths the reader
// cannot know keep their "$".
func (s *fsState) abs(p string) string {
	switch {
	case p == "~" || strings.HasPrefix(p, "~/"):
		p = s.home + p[1:]
	case !strings.HasPrefix(p, "/"):
		p = s.cwd + "/" + p
	}
	return path.Clean(p)
}

// observe updates the state with one command; lookup reads the step's
// variables at that point.
func (s *fsState) observe(c command, step int, lookup func(string) (string, bool)) {
	s.step = step
	var out []*artifact
	switch c.name {
	case "cd":
		ops := operands(c.args, nil)
		switch {
		case len(ops) == 0:
			s.cwd = s.home
		case ops[0] != "-":
			s.cwd = s.abs(ops[0])
		}
	case "pushd":
		if ops := operands(c.args, nil); len(ops) > 0 {
			s.stack = append(s.stack, s.cwd)
			s.cwd = s.abs(ops[0])
		}
	case "popd":
		if n := len(s.stack); n > 0 {
			s.cwd, s.stack = s.stack[n-1], s.stack[:n-1]
		}
	case "curl", "wget":
		out = s.fetch(c)
	case "tar", "bsdtar", "unzip":
		s.extract(c)
	case "mv", "cp", "install", "rsync", "ln":
		s.place(c)
	case "rm":
		s.remove(c)
	default:
		s.run(c, lookup)
	}
	s.prev = out
}

// fetch creates an artifact per URL argument a candidate signal matches,
// placed where curl or wget writes it. Output to stdout feeds the next
// command of a pipe.
func (s *fsState) fetch(c command) []*artifact {
	var (
		outputs []string // curl -o, in order
		remote  bool     // curl -O
		dir     = s.cwd
		toOut   []*artifact
	)
	wget := c.name == "wget"
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		next := func() string {
			if i+1 < len(c.args) {
				i++
				return c.args[i]
			}
			return ""
		}
		switch {
		case wget && (a == "-O" || a == "--output-document"):
			outputs = append(outputs, next())
		case wget && strings.HasPrefix(a, "--output-document="):
			outputs = append(outputs, strings.TrimPrefix(a, "--output-document="))
		case wget && (a == "-P" || a == "--directory-prefix"):
			dir = s.abs(next())
		case wget && strings.HasPrefix(a, "-O") && len(a) > 2 && !strings.HasPrefix(a, "--"):
			outputs = append(outputs, a[2:])
		case !wget && (a == "-o" || a == "--output"):
			outputs = append(outputs, next())
		case !wget && (a == "-O" || a == "--remote-name" || a == "--remote-name-all"):
			remote = true
		case !wget && a == "--output-dir":
			dir = s.abs(next())
		case !wget && strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--"):
			// Bundled short options: "-fsSLO", "-fsSLo file".
			if strings.ContainsRune(a, 'O') {
				remote = true
			}
			if strings.HasSuffix(a, "o") {
				outputs = append(outputs, next())
			}
		}
	}
	n := 0 // URLs seen, to pair with curl's outputs
	for _, a := range operands(c.args, nil) {
		if !strings.Contains(a, "://") {
			continue
		}
		url := a
		n++
		var dest string
		switch {
		case wget && len(outputs) > 0:
			dest = outputs[len(outputs)-1]
		case !wget && n <= len(outputs):
			dest = outputs[n-1]
		case wget || remote:
			dest = path.Base(strings.SplitN(url, "?", 2)[0])
		}
		for _, sig := range s.signalsIn(url) {
			art := s.newArtifact(&artifact{rule: sig.rule, sig: sig, needle: url})
			if art == nil {
				continue
			}
			if dest == "-" || dest == "" {
				art.piped = true
				toOut = append(toOut, art)
				continue
			}
			if strings.HasPrefix(dest, "/") {
				art.add(place{path: path.Clean(dest)})
			} else {
				art.add(place{path: path.Clean(dir + "/" + dest)})
			}
		}
	}
	return toOut
}

// tarValueOpts are tar options that take the next word as their value.
var tarValueOpts = map[string]bool{
	"-C": true, "--directory": true, "-f": true, "--file": true, "--exclude": true, "-X": true,
	"--exclude-from": true, "-T": true, "--files-from": true, "--transform": true, "--strip-components": true,
	"--owner": true, "--group": true, "--mode": true, "-b": true, "--use-compress-program": true, "-I": true,
}

// extract follows an archive of an artifact into the folder it is
// unpacked in: its named members, or the folder's contents.
func (s *fsState) extract(c command) {
	var (
		file, dir string
		members   []string
		strip     int
		stdin     bool
	)
	dir = s.cwd
	if c.name == "unzip" {
		ops := operands(c.args, map[string]bool{"-d": true, "-x": true, "-P": true})
		for i := 0; i+1 < len(c.args); i++ {
			if c.args[i] == "-d" {
				dir = s.abs(c.args[i+1])
			}
		}
		if len(ops) == 0 {
			return
		}
		file, members = ops[0], ops[1:]
	} else {
		extracting, creating := false, false
		for i := 0; i < len(c.args); i++ {
			a := c.args[i]
			value := func() string {
				if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
					_ = k
					return v
				}
				if i+1 < len(c.args) {
					i++
					return c.args[i]
				}
				return ""
			}
			switch {
			case a == "--extract" || a == "--get":
				extracting = true
			case a == "--create":
				creating = true
			case a == "-C" || a == "--directory" || strings.HasPrefix(a, "--directory="):
				dir = s.abs(value())
			case a == "-f" || a == "--file" || strings.HasPrefix(a, "--file="):
				file = value()
			case strings.HasPrefix(a, "--strip-component"):
				v := value()
				strip = 0
				for _, r := range v {
					if r < '0' || r > '9' {
						break
					}
					strip = strip*10 + int(r-'0')
				}
			case strings.HasPrefix(a, "--"):
				if k, _, ok := strings.Cut(a, "="); !ok && tarValueOpts[k] {
					i++
				}
			case strings.HasPrefix(a, "-") || i == 0:
				// "-xzf file", and the old style "xfz file" as first word.
				flags := strings.TrimPrefix(a, "-")
				if strings.Trim(flags, "abcdfhjkmoprstuvwxzABCEGHIJKLMNOPRSTUVWXZ") != "" {
					if i == 0 && !strings.HasPrefix(a, "-") {
						members = append(members, a)
					}
					continue
				}
				extracting = extracting || strings.ContainsRune(flags, 'x')
				creating = creating || strings.ContainsRune(flags, 'c')
				if strings.ContainsRune(flags, 'f') && i+1 < len(c.args) {
					i++
					file = c.args[i]
				}
				if strings.ContainsRune(flags, 'C') && i+1 < len(c.args) {
					i++
					dir = s.abs(c.args[i])
				}
			default:
				members = append(members, a)
			}
		}
		if creating {
			// An archive of a toolchain's files goes where the reader
			// does not follow (a pipe into another tar, a file).
			for _, m := range members {
				p := m
				if !strings.HasPrefix(m, "/") {
					p = path.Join(dir, m)
				}
				s.each(func(art *artifact) {
					if art.holds(p) {
						art.escaped = true
					}
				})
			}
		}
		if !extracting {
			return
		}
	}
	if file == "" || file == "-" {
		stdin = true
	}
	var arts []*artifact
	if stdin {
		if c.stdin != nil {
			arts = s.prev
		}
	} else {
		f := s.abs(file)
		for _, art := range s.arts {
			if art.sig != nil && art.holds(f) {
				arts = append(arts, art)
			}
		}
		if len(arts) == 0 {
			// An archive an earlier step put in place ("COPY
			// crystal.tar.gz /tmp/"): unpacked here, it lands here.
			for _, sig := range s.signalsIn(path.Base(f)) {
				if art := s.newArtifact(&artifact{rule: sig.rule, sig: sig, needle: path.Base(f)}); art != nil {
					arts = append(arts, art)
				}
			}
		}
	}
	for _, m := range members {
		parts := strings.Split(strings.Trim(m, "/"), "/")
		if strip < len(parts) {
			s.putAt(path.Clean(dir+"/"+strings.Join(parts[strip:], "/")), "")
		}
	}
	for _, art := range arts {
		art.piped = false
		if len(members) == 0 {
			art.add(s.unpackedAt(art.rule, dir))
			continue
		}
		if art.sig.runtimeOnly(members) {
			continue
		}
		for _, m := range members {
			parts := strings.Split(strings.Trim(m, "/"), "/")
			if strip >= len(parts) {
				art.add(place{path: dir, contents: true})
				continue
			}
			art.add(place{path: path.Clean(dir + "/" + strings.Join(parts[strip:], "/"))})
		}
	}
}

// unpackedAt is where an archive of rule unpacked into dir lies: the
// toolchain's own folder when the catalog names one in dir (a Go archive
// unpacked into /usr/local is /usr/local/go), else dir's contents.
func (s *fsState) unpackedAt(rule, dir string) place {
	for _, sig := range s.paths {
		p := sig.g.String()
		if sig.rule == rule && !strings.ContainsAny(p, "*?") && path.Dir(p) == dir {
			return place{path: p}
		}
	}
	return place{path: dir, contents: true}
}

// placeValueOpts are options of mv, cp and install that take a value.
var placeValueOpts = map[string]bool{"-m": true, "--mode": true, "-o": true, "--owner": true, "-g": true, "--group": true, "-S": true, "--suffix": true}

// place follows files moved, copied or linked out of an artifact, and
// files put at a toolchain's path.
func (s *fsState) place(c command) {
	ops := operands(c.args, placeValueOpts)
	if c.name == "ln" {
		if len(ops) >= 2 && !strings.Contains(ops[len(ops)-1], "$") {
			dest := s.abs(ops[len(ops)-1])
			for _, src := range ops[:len(ops)-1] {
				s.putAt(dest, src)
			}
		}
		return
	}
	target := ""
	for i, a := range c.args {
		if (a == "-t" || a == "--target-directory") && i+1 < len(c.args) {
			target = c.args[i+1]
			ops = slicesDelete(ops, target)
		} else if v, ok := strings.CutPrefix(a, "--target-directory="); ok {
			target = v
		}
	}
	if target == "" {
		if len(ops) < 2 {
			return
		}
		target, ops = ops[len(ops)-1], ops[:len(ops)-1]
	}
	dest := s.abs(target)
	for _, src := range ops {
		s.putAt(dest, src)
		p := s.abs(globDir(src))
		s.each(func(art *artifact) {
			if !art.holds(p) {
				return
			}
			art.add(place{path: dest})
			if c.name == "mv" {
				art.dropExact(p)
			}
		})
	}
}

// each calls f on the artifacts still in the image: this step's and the
// earlier steps'.
func (s *fsState) each(f func(*artifact)) {
	for _, art := range s.arts {
		f(art)
	}
	for _, l := range s.earlier {
		if !l.art.gone() {
			f(l.art)
		}
	}
}

// globDir cuts a path at its first component holding a wildcard: the
// folder the matched files are in.
func globDir(p string) string {
	i := strings.IndexAny(p, "*?[")
	if i < 0 {
		return p
	}
	if j := strings.LastIndex(p[:i], "/"); j >= 0 {
		return p[:j+1] + "."
	}
	return "."
}

func slicesDelete(ss []string, s string) []string {
	out := ss[:0]
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func (a *artifact) dropExact(p string) {
	out := a.places[:0]
	for _, pl := range a.places {
		if pl.path != p || pl.contents {
			out = append(out, pl)
		}
	}
	a.places = out
}

// remove deletes the places an rm names: a path and what lies under it;
// "dir/*" the contents of dir.
func (s *fsState) remove(c command) {
	for _, op := range operands(c.args, nil) {
		if strings.Contains(op, "$") {
			continue
		}
		p := s.abs(op)
		base := path.Base(p)
		for _, art := range s.arts {
			art.clear(p, base)
		}
		for _, l := range s.earlier {
			if !l.art.gone() {
				l.art.clear(p, base)
				if l.art.gone() {
					l.art.goneAt = s.step
				}
			}
		}
	}
}

// hiddenGlob matches the shell idioms for a folder's hidden entries
// (".[!.]*", "..?*"), which rm uses next to "*".
var hiddenGlob = regexp.MustCompile(`^\.(\[!\.\]|\.\?)\*$`)

func (a *artifact) clear(p, base string) {
	dir := path.Dir(p)
	wild := strings.ContainsAny(base, "*?[")
	out := a.places[:0]
	for _, pl := range a.places {
		switch {
		case !wild && under(pl.path, p):
			continue
		case wild && base == "*" && (pl.path == dir && pl.contents || pl.path != dir && under(pl.path, dir)):
			continue
		case wild && !hiddenGlob.MatchString(base) && !pl.contents && path.Dir(pl.path) == dir && globMatch(base, path.Base(pl.path)):
			continue
		}
		out = append(out, pl)
	}
	a.places = out
}

func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// run handles a command that runs a program: an installer fetched by the
// step writes into the folders its signal names (installs), else where the
// reader cannot follow; so does any build run from inside an artifact's
// folder ("./configure && make install").
func (s *fsState) run(c command, lookup func(string) (string, bool)) {
	prog := c.prog
	if interpreters[c.name] {
		if ops := operands(c.args, nil); len(ops) > 0 && !hasArg(c.args, "-r", "-e", "-c") {
			prog = ops[0]
			if !strings.Contains(prog, "/") {
				prog = "./" + prog
			}
		}
	}
	if shells[c.name] {
		if _, script := shellScript(c.args); script {
			return
		}
		ops := operands(c.args, nil)
		switch {
		case len(ops) > 0 && ops[0] != "/dev/stdin":
			prog = ops[0]
		case c.stdin != nil:
			// "curl ... | sh": runs what the fetch wrote to stdout.
			for _, art := range s.prev {
				s.installs(art, lookup)
			}
			return
		default:
			return
		}
	}
	if prog == "" {
		return
	}
	p := s.abs(prog)
	for _, art := range s.arts {
		if art.sig == nil {
			continue
		}
		switch {
		case strings.Contains(prog, "/") && art.isFile(p):
			s.installs(art, lookup)
		case strings.Contains(prog, "/") && art.holds(p):
			// A tool of an unpacked toolchain run to build something:
			// what it writes is the build's output, not the toolchain.
		case c.name != "echo" && c.name != "printf" && art.holds(s.cwd) && !inertCommands[c.name]:
			art.escaped = true
		}
	}
}

// interpreters run the script file named by their first operand.
var interpreters = map[string]bool{"php": true, "python": true, "python3": true, "perl": true, "ruby": true, "node": true}

// inertCommands do not copy files out of the folder they run in.
var inertCommands = map[string]bool{
	"ls": true, "cat": true, "test": true, "[": true, "sha256sum": true, "sha512sum": true, "md5sum": true,
	"gpg": true, "gpgv": true, "chmod": true, "chown": true, "mkdir": true, "true": true, "false": true,
	"grep": true, "find": true, "file": true, "du": true, "stat": true, "pwd": true, "sed": true, "ln": true,
}

// installs records what running an artifact's installer writes: the
// folders its signal's variables name at this point, or, when the signal
// names none or one is unset, places the reader cannot follow.
func (s *fsState) installs(art *artifact, lookup func(string) (string, bool)) {
	art.piped = false
	if len(art.sig.homes) == 0 {
		art.escaped = true
		return
	}
	for _, h := range art.sig.homes {
		v, ok := lookup(h)
		if !ok || v == "" {
			art.escaped = true
			continue
		}
		art.add(place{path: s.abs(v)})
	}
}

// cleared reports whether the step fetched at least one artifact of sig
// and deleted every one it fetched.
func (s *fsState) cleared(sig *downloadSignal) bool {
	if s.overflow {
		return false
	}
	found := false
	for _, art := range s.arts {
		if art.sig != sig || art.path != nil {
			continue
		}
		if !art.gone() {
			return false
		}
		found = true
	}
	return found
}
