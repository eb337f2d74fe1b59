package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// This file turns history lines into Dockerfile instructions and shell
// scripts into simple commands. It is a reader for the shell that image
// builders write, not a shell: it knows quotes, escapes, comments, the
// control operators and the common prefixes (sudo, env, xargs), and it
// expands variables the image or the step itself defines. Anything it does
// not understand degrades to "not a command", never to a panic.

// instruction is one history entry read as a Dockerfile instruction.
type instruction struct {
	// keyword is RUN, COPY, ADD, ENV, CMD, ... or "" when the line is not
	// a Dockerfile instruction (bazel, apko, debuerreotype comments).
	keyword string
	// args is what follows the keyword; for RUN, the shell script.
	args string
	// buildArgs are the ARG values a RUN line carries ("|2 A=1 B=2 ...").
	buildArgs map[string]string
}

var dockerfileKeywords = map[string]bool{
	"RUN": true, "COPY": true, "ADD": true, "ENV": true, "ARG": true, "LABEL": true,
	"CMD": true, "ENTRYPOINT": true, "WORKDIR": true, "USER": true, "EXPOSE": true,
	"VOLUME": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true,
	"ONBUILD": true, "MAINTAINER": true,
}

var shells = map[string]bool{"sh": true, "bash": true, "ash": true, "dash": true, "zsh": true}

// parseInstruction reads a created_by line as written by the classic
// builder ("/bin/sh -c #(nop)  ENV A=b", "/bin/sh -c apt-get ..."),
// BuildKit ("RUN /bin/sh -c ... # buildkit", "COPY /x /y # buildkit") and
// both with build arguments ("|2 A=1 B=2 /bin/sh -c ...").
func parseInstruction(line string) instruction {
	s := strings.TrimSpace(line)
	s = strings.TrimSpace(strings.TrimSuffix(s, "# buildkit"))
	if rest, ok := strings.CutPrefix(s, "#(nop)"); ok {
		return keywordInstruction(strings.TrimSpace(rest))
	}
	if script, ok := stripShell(s); ok {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(script), "#(nop)"); ok {
			return keywordInstruction(strings.TrimSpace(rest))
		}
		return instruction{keyword: "RUN", args: script}
	}
	if strings.HasPrefix(s, "|") {
		return runInstruction(s)
	}
	word, _, _ := strings.Cut(s, " ")
	if dockerfileKeywords[word] {
		return keywordInstruction(s)
	}
	return instruction{args: s}
}

func keywordInstruction(s string) instruction {
	word, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	if word == "RUN" {
		return runInstruction(rest)
	}
	return instruction{keyword: word, args: rest}
}

// runInstruction reads the arguments of a RUN: optional "|N K=V ..." build
// arguments, then a shell invocation or an exec-form command.
func runInstruction(s string) instruction {
	in := instruction{keyword: "RUN"}
	if strings.HasPrefix(s, "|") {
		fields := strings.Fields(s)
		n := 0
		for _, c := range strings.TrimPrefix(fields[0], "|") {
			if c < '0' || c > '9' || n > 1000 {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n >= 0 && n < len(fields) {
			in.buildArgs, s = readBuildArgs(strings.TrimPrefix(s, fields[0]), n)
		}
	}
	if script, ok := stripShell(s); ok {
		s = script
	}
	in.args = s
	return in
}

// readBuildArgs reads the n "K=V" build arguments at the start of s and
// returns them and the rest of s. BuildKit writes them unquoted, so a
// value runs on over spaces ("BUILD_DEPS=make gcc") up to the next
// argument or, for the last, up to the shell that runs the script; with
// no shell after it (exec form), the last value is taken to be one word.
func readBuildArgs(s string, n int) (map[string]string, string) {
	args := make(map[string]string, n)
	for k := 0; k < n; k++ {
		s = strings.TrimSpace(s)
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		for i := end; i < len(s); {
			w := s[i:]
			w = w[len(w)-len(strings.TrimLeft(w, " ")):]
			if k < n-1 && assignment.MatchString(w) {
				end = i
				break
			}
			if first, _, _ := strings.Cut(w, " "); k == n-1 && (shells[path.Base(first)] || first == "/usr/bin/env") {
				// One try: the script starts here or the value is one word.
				if _, ok := stripShell(w); ok {
					end = i
				}
				break
			}
			j := strings.IndexByte(w, ' ')
			if j < 0 {
				break
			}
			i = len(s) - len(w) + j
		}
		if key, v, ok := strings.Cut(s[:end], "="); ok {
			args[key] = v
		}
		s = s[end:]
	}
	return args, strings.TrimSpace(s)
}

// stripShell removes a leading "/bin/sh -c", "/bin/bash -euxo pipefail
// -c" and the like, returning the script that follows.
func stripShell(s string) (string, bool) {
	i := 0
	next := func() string {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		return s[start:i]
	}
	first := next()
	if first == "/usr/bin/env" {
		first = next()
	}
	if !shells[path.Base(first)] {
		return "", false
	}
	op, script := shellOptions(next)
	if !script || op == "" {
		return "", false
	}
	return s[i-len(op):], true
}

// shellOptions reads a shell's options, one word of next at a time, up to
// its first operand, which it returns, and reports whether they include c:
// that operand is then the script to run. Options bundle ("-euxo
// pipefail", "-lc"), and each o or O in a bundle takes the next word.
func shellOptions(next func() string) (operand string, script bool) {
	for w := next(); w != ""; w = next() {
		switch {
		case w == "--":
			return next(), script
		case strings.HasPrefix(w, "--"):
			// --login, --norc, --posix
		case len(w) > 1 && (w[0] == '-' || w[0] == '+'):
			script = script || (w[0] == '-' && strings.ContainsRune(w, 'c'))
			for range strings.Count(w, "o") + strings.Count(w, "O") {
				next()
			}
		default:
			return w, script
		}
	}
	return "", false
}

// shellScript returns the script a shell's arguments pass it with -c.
func shellScript(args []string) (string, bool) {
	i := 0
	op, script := shellOptions(func() string {
		if i >= len(args) {
			return ""
		}
		i++
		return args[i-1]
	})
	return op, script
}

// word is one shell word with its quotes removed.
type word struct {
	text string
	// quoted is true when any part of the word was quoted.
	quoted bool
	// literal is true when part of the word was single-quoted, so it must
	// not be expanded.
	literal bool
}

// segment is one simple command as tokenized.
type segment struct {
	words []word
	// piped is true when the command reads the output of the one before
	// it through a pipe ("a | b", not "a || b").
	piped bool
	// subst is true when the command starts a command substitution "$(".
	subst bool
}

// tokenize splits a script into simple commands at the control operators
// ; & | && || newlines, parentheses and backquotes, and at command
// substitutions "$(" outside double quotes. Every operator is ASCII, so it
// reads bytes: the bytes of a multi-byte character pass through whole.
func tokenize(script string) []segment {
	var (
		cmds []segment
		cur  segment
		buf  strings.Builder
		w    word
		in   bool // a word is being built
	)
	endWord := func() {
		if in {
			w.text = buf.String()
			cur.words = append(cur.words, w)
		}
		buf.Reset()
		w = word{}
		in = false
	}
	endCmd := func(pipeNext bool) {
		endWord()
		if len(cur.words) > 0 {
			cmds = append(cmds, cur)
		}
		cur = segment{piped: pipeNext}
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == '\\':
			if i+1 < len(script) {
				i++
				if script[i] == '\n' {
					endWord()
					continue
				}
				buf.WriteByte(script[i])
				in = true
			}
		case c == '\'':
			in, w.quoted, w.literal = true, true, true
			for i++; i < len(script) && script[i] != '\''; i++ {
				buf.WriteByte(script[i])
			}
		case c == '"':
			in, w.quoted = true, true
			for i++; i < len(script) && script[i] != '"'; i++ {
				if script[i] == '\\' && i+1 < len(script) && strings.IndexByte("\"\\$`", script[i+1]) >= 0 {
					i++
				}
				buf.WriteByte(script[i])
			}
		case c == '#' && !in:
			for i < len(script) && script[i] != '\n' {
				i++
			}
			endCmd(false)
		case c == ' ' || c == '\t' || c == '\r':
			endWord()
		case c == '|':
			// "||" is a list operator; "|" and "|&" make a pipe.
			pipe := i+1 >= len(script) || script[i+1] != '|'
			if i+1 < len(script) && (script[i+1] == '|' || script[i+1] == '&') {
				i++
			}
			endCmd(pipe)
		case c == '\n' || c == ';' || c == '&' || c == '(' || c == ')' || c == '`':
			endCmd(false)
		case c == '$' && i+1 < len(script) && script[i+1] == '(':
			endCmd(false)
			cur.subst = true
			i++
		case c == '$' && i+1 < len(script) && script[i+1] == '{':
			// Keep ${...} in one word, whatever it holds.
			in = true
			for ; i < len(script) && script[i] != '}'; i++ {
				buf.WriteByte(script[i])
			}
			if i < len(script) {
				buf.WriteByte('}')
			}
		default:
			buf.WriteByte(c)
			in = true
		}
	}
	endCmd(false)
	return cmds
}

var (
	varRef     = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// Limits of the reader. History lines are written by the image's author,
// so the work they cause must be bounded whatever they hold; what a limit
// leaves unread is said (shellReader.limits), never dropped silently.
const (
	// maxLineBytes is how much of one history line is analysed.
	maxLineBytes = 64 << 10
	// maxExpandBytes is how many bytes variable expansion may add to one
	// step, its nested scripts included: "A=$A$A" doubles a value each time.
	maxExpandBytes = 256 << 10
	// maxScriptDepth bounds "sh -c" recursion.
	maxScriptDepth = 3
	// maxPipeHops is how far back a pipe is followed to what feeds it.
	maxPipeHops = 16
)

// shellReader reads the scripts of one step. Its variables are those the
// step defines (build arguments, assignments) over the image's environment.
type shellReader struct {
	env  map[string]string // read only
	vars map[string]string
	// budget is what expansion may still add, in bytes.
	budget int
	// limits says, once each, what was left unread.
	limits []string
	// observe, when set, sees each command as it is read, while the
	// variables hold the values they have at that point of the script.
	observe func(command)
}

// mktempValue reads a value written as "$(mktemp -d ...)" (quoted, so
// kept whole by the tokenizer) as the folder mktemp makes.
func mktempValue(v, name string) (string, bool) {
	inner, ok := strings.CutPrefix(strings.TrimSpace(v), "$(mktemp")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", false
	}
	return mktempPath(strings.Fields(strings.TrimSuffix(inner, ")")), name), true
}

// mktempPath names the folder or file "mktemp ARGS" makes for the
// variable name: under /tmp unless -p, --tmpdir or a template with a
// folder says otherwise. Its random part is spelled after the variable.
func mktempPath(args []string, name string) string {
	dir := "/tmp"
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "-p" || a == "--tmpdir") && i+1 < len(args):
			i++
			dir = args[i]
		case strings.HasPrefix(a, "--tmpdir="):
			dir = strings.TrimPrefix(a, "--tmpdir=")
		case !strings.HasPrefix(a, "-") && strings.Contains(a, "/"):
			dir = path.Dir(a)
		}
	}
	return path.Clean(dir + "/tmp." + strings.ToLower(name))
}

func newShellReader(env, buildArgs map[string]string) *shellReader {
	r := &shellReader{env: env, vars: make(map[string]string, len(buildArgs)), budget: maxExpandBytes}
	for k, v := range buildArgs {
		r.vars[k] = v
	}
	return r
}

func (r *shellReader) lookup(name string) (string, bool) {
	if v, ok := r.vars[name]; ok {
		return v, true
	}
	v, ok := r.env[name]
	return v, ok
}

func (r *shellReader) limit(why string) {
	if !slices.Contains(r.limits, why) {
		r.limits = append(r.limits, why)
	}
}

// expand substitutes the variables it knows; an unquoted word whose value
// changed is split at whitespace, as the shell would. Once the expansion
// budget is spent, references stay as written.
func (r *shellReader) expand(ws []word) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		if w.literal || !strings.Contains(w.text, "$") {
			out = append(out, w.text)
			continue
		}
		s := varRef.ReplaceAllStringFunc(w.text, func(m string) string {
			v, ok := r.lookup(strings.Trim(m, "${}"))
			if !ok {
				return m
			}
			if len(v) > r.budget {
				r.limit(fmt.Sprintf("variable expansion stopped at %d KiB, later references were read as written", maxExpandBytes>>10))
				return m
			}
			r.budget -= len(v)
			return v
		})
		if !w.quoted && s != w.text {
			out = append(out, strings.Fields(s)...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// command is one simple command after prefixes and redirections are gone.
type command struct {
	// name is the base name of the program ("make" for /usr/bin/make).
	name string
	// prog is the program as written ("/tmp/x/rustup-init", "./configure").
	prog string
	args []string
	// assigns are the NAME=value words before the program, or the whole
	// command when it only assigns.
	assigns map[string]string
	// text is the command as read, for evidence.
	text string
	// xargs is true when the command runs under xargs, which adds the
	// words it reads to its arguments.
	xargs bool
	// stdin is the command before it in a pipe, if any.
	stdin *command
}

var (
	// skipWords may stand before a command without being it.
	skipWords = map[string]bool{
		"if": true, "then": true, "else": true, "elif": true, "do": true,
		"while": true, "until": true, "!": true, "{": true, "}": true, "time": true,
		"exec": true, "command": true, "builtin": true, "nohup": true, "eatmydata": true,
	}
	// notCommands start a line that runs nothing by itself.
	notCommands = map[string]bool{"for": true, "case": true, "function": true, "fi": true, "done": true, "esac": true, "in": true}
	// prefixes run the command that follows them; the value is the set of
	// their options that take an argument.
	prefixes = map[string]map[string]bool{
		"sudo":    {"-u": true, "-g": true, "-C": true, "-D": true},
		"env":     {"-u": true, "-C": true, "-S": false},
		"xargs":   {"-n": true, "-I": true, "-L": true, "-P": true, "-d": true, "-a": true, "-s": true, "-E": true},
		"nice":    {"-n": true},
		"stdbuf":  {},
		"timeout": {"-s": true, "-k": true},
		"gosu":    {},
		"su-exec": {},
		"chroot":  {},
	}
	// prefixOperand counts the operands a prefix takes before the command.
	prefixOperand = map[string]int{"timeout": 1, "gosu": 1, "su-exec": 1, "chroot": 1}
)

// simpleCommand finds the program and its arguments in a tokenized command.
func simpleCommand(ws []string) (command, bool) {
	cmd := command{text: strings.Join(ws, " ")}
	i := 0
	for i < len(ws) {
		w := ws[i]
		switch {
		case skipWords[w]:
			i++
			continue
		case notCommands[w]:
			return cmd, false
		case assignment.MatchString(w):
			k, v, _ := strings.Cut(w, "=")
			if cmd.assigns == nil {
				cmd.assigns = map[string]string{}
			}
			cmd.assigns[k] = v
			i++
			continue
		}
		opts, ok := prefixes[path.Base(w)]
		if !ok {
			break
		}
		cmd.xargs = cmd.xargs || path.Base(w) == "xargs"
		operands := prefixOperand[path.Base(w)]
		for i++; i < len(ws); i++ {
			a := ws[i]
			if opts[a] {
				i++
				continue
			}
			if strings.HasPrefix(a, "-") || (path.Base(w) == "env" && assignment.MatchString(a)) {
				continue
			}
			if operands > 0 {
				operands--
				continue
			}
			break
		}
	}
	if i >= len(ws) {
		return cmd, len(cmd.assigns) > 0
	}
	cmd.prog = ws[i]
	cmd.name = path.Base(ws[i])
	for j := i + 1; j < len(ws); j++ {
		a := ws[j]
		if isRedirect(a) {
			if strings.TrimLeft(a, "0123456789<>&|") == "" && j+1 < len(ws) {
				j++
			}
			continue
		}
		cmd.args = append(cmd.args, a)
	}
	return cmd, true
}

var redirect = regexp.MustCompile(`^[0-9]*(>>?|<<?|>&|<&|&>)`)

func isRedirect(s string) bool { return redirect.MatchString(s) }

// commands reads a script into simple commands in order, expanding the
// variables it knows and those the script assigns as it goes. Scripts
// passed to "sh -c" and "su -c" are read too, to maxScriptDepth.
func (r *shellReader) commands(script string) []command {
	return r.appendCommands(nil, script, 0)
}

func (r *shellReader) appendCommands(out []command, script string, depth int) []command {
	var (
		prev    command // the command before, for a pipe
		hasPrev bool
		// empty is the variable the command before assigned nothing, as
		// "X=$(mktemp -d)" reads before its substitution.
		empty string
	)
	for _, seg := range tokenize(script) {
		cmd, ok := simpleCommand(r.expand(seg.words))
		if !ok {
			hasPrev, empty = false, ""
			continue
		}
		if cmd.name == "" || cmd.name == "export" || cmd.name == "local" || cmd.name == "readonly" {
			empty = ""
			assign := func(k, v string) {
				if t, ok := mktempValue(v, k); ok {
					v = t
				}
				r.vars[k] = v
				if v == "" {
					empty = k
				}
			}
			for k, v := range cmd.assigns {
				assign(k, v)
			}
			for _, a := range cmd.args {
				if k, v, ok := strings.Cut(a, "="); ok && assignment.MatchString(a) {
					assign(k, v)
				}
			}
			hasPrev = false
			continue
		}
		if seg.subst && cmd.name == "mktemp" && empty != "" {
			r.vars[empty] = mktempPath(cmd.args, empty)
		}
		empty = ""
		if seg.piped && hasPrev {
			up := prev
			cmd.stdin = &up
		}
		if r.observe != nil {
			r.observe(cmd)
		}
		out = append(out, cmd)
		prev, hasPrev = cmd, true
		script, ok := "", false
		switch {
		case shells[cmd.name]:
			script, ok = shellScript(cmd.args)
		case cmd.name == "su":
			// su -c takes the script as its value.
			if j := slices.Index(cmd.args, "-c"); j >= 0 && j+1 < len(cmd.args) {
				script, ok = cmd.args[j+1], true
			}
		}
		switch {
		case !ok:
		case depth >= maxScriptDepth:
			r.limit(fmt.Sprintf("scripts nested deeper than %d sh -c were not read", maxScriptDepth))
		default:
			out = r.appendCommands(out, script, depth+1)
		}
	}
	return out
}

// firstOperand returns the first argument that is not an option.
func firstOperand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// parseEnv reads the KEY=value pairs of an ENV (or LABEL) instruction as
// history renders them: values are not quoted and may hold spaces, so a
// word that does not start a new KEY= belongs to the previous value. Each
// value is built once, at its final size, from its words.
func parseEnv(args string) [][2]string {
	fields := strings.Fields(args)
	if len(fields) > 0 && !strings.Contains(fields[0], "=") {
		// Legacy "ENV KEY value" form.
		return [][2]string{{fields[0], strings.Join(fields[1:], " ")}}
	}
	var out [][2]string
	start := 0 // the field holding the KEY= of the value being read
	flush := func(end int) {
		if len(out) == 0 {
			return
		}
		_, v, _ := strings.Cut(fields[start], "=")
		words := fields[start+1 : end]
		n := len(v) + len(words)
		for _, w := range words {
			n += len(w)
		}
		var b strings.Builder
		b.Grow(n)
		b.WriteString(strings.Trim(v, `"`))
		for _, w := range words {
			b.WriteByte(' ')
			b.WriteString(strings.Trim(w, `"`))
		}
		out[len(out)-1][1] = b.String()
	}
	for i, f := range fields {
		if assignment.MatchString(f) {
			flush(i)
			k, _, _ := strings.Cut(f, "=")
			out = append(out, [2]string{k, ""})
			start = i
		}
	}
	flush(len(fields))
	return out
}
