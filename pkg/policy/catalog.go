package policy

import (
	_ "embed"
	"fmt"
	"maps"
	"path"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// catalogYAML is slimgate's rule catalog: what each toolchain and build
// step looks like in an image, and the rules without signals, as data.
// See catalog.yaml.
//
//go:embed catalog.yaml
var catalogYAML []byte

// catalogFile is the shape of catalog.yaml.
type catalogFile struct {
	// Remedies are texts the entries share, by YAML anchor.
	Remedies []string `json:"remedies"`
	// Fixed are the rules without signals (size, inspection, reference,
	// bloat), reported after the toolchains.
	Fixed []Rule `json:"fixed"`
	// Toolchains are the entries, in reporting order.
	Toolchains []v1alpha1.Toolchain `json:"toolchains"`
}

// fixedCategories are the categories of rules without signals.
var fixedCategories = []string{string(CategorySize), string(CategoryInspection), string(CategoryReference), string(CategoryBloat)}

// minLiteral is the shortest literal a pattern must contain: the text of
// a step is searched for these literals first, so that however many
// patterns a catalog holds, a step is read once (see literalIndex).
const minLiteral = 3

// builtin is the embedded catalog, compiled on first use. The embedded
// file is checked by the package's tests: it cannot fail at run time.
var builtin = sync.OnceValue(func() *detector {
	d, err := loadCatalog(catalogYAML)
	if err != nil {
		panic(fmt.Sprintf("policy: the embedded toolchain catalog is invalid: %v", err))
	}
	return d
})

// loadCatalog decodes a catalog strictly (an unknown field is an error)
// and compiles it.
func loadCatalog(data []byte) (*detector, error) {
	var cf catalogFile
	if err := yaml.UnmarshalStrict(data, &cf); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	errs := checkFixed(field.NewPath("fixed"), cf.Fixed)
	d, compileErrs := compileDetector(&detector{rules: cf.Fixed, fixed: cf.Fixed}, cf.Toolchains, field.NewPath("toolchains"), true)
	if errs = append(errs, compileErrs...); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return d, nil
}

// checkFixed checks the rules without signals: each has an id of its own,
// a category of their kinds, a title and a remedy.
func checkFixed(fp *field.Path, fixed []Rule) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, r := range fixed {
		p := fp.Index(i)
		switch {
		case r.ID == "":
			errs = append(errs, field.Required(p.Child("id"), ""))
		case seen[r.ID]:
			errs = append(errs, field.Duplicate(p.Child("id"), r.ID))
		}
		seen[r.ID] = true
		if !slices.Contains(fixedCategories, string(r.Category)) {
			errs = append(errs, field.NotSupported(p.Child("category"), r.Category, fixedCategories))
		}
		if strings.TrimSpace(r.Title) == "" {
			errs = append(errs, field.Required(p.Child("title"), ""))
		}
		if strings.TrimSpace(r.Remedy) == "" {
			errs = append(errs, field.Required(p.Child("remedy"), ""))
		}
	}
	return errs
}

// signal is one compiled signal of any kind.
type signal struct {
	rule     string
	strength int
	// kind is the YAML list the signal came from, for evidence.
	kind string
}

// pkgSignal matches package names.
type pkgSignal struct {
	signal
	re *regexp.Regexp // nil: exact names only
}

// pathSignal matches where a toolchain is put.
type pathSignal struct {
	signal
	g glob.Pattern
}

// kvSignal matches an environment variable or a label.
type kvSignal struct {
	signal
	key   glob.Pattern
	value *regexp.Regexp
}

// cmdSignal matches a command.
type cmdSignal struct {
	signal
	args          []*regexp.Regexp
	anyArg        *regexp.Regexp
	versionChecks bool
}

// versionSpec reads a toolchain's version from the environment.
type versionSpec struct {
	env      []string
	parts    int
	fallback string
}

// detector is a compiled catalog: the rules in reporting order and their
// signals indexed for one pass over an image. It is immutable.
type detector struct {
	rules []Rule
	// fixed are the rules without signals, the last ones of rules.
	fixed    []Rule
	requires map[string][]string
	versions map[string]versionSpec

	pkgNames    map[string][]*pkgSignal
	pkgPatterns []*pkgSignal
	pkgIndex    literalIndex
	downloads   []*downloadSignal
	dlIndex     literalIndex
	paths       []*pathSignal
	env         []*kvSignal
	labels      []*kvSignal
	commands    map[string][]*cmdSignal
	defaults    map[string][]*cmdSignal
}

// strengths maps the schema's words to the analysis' numbers.
var strengths = map[v1alpha1.Strength]int{v1alpha1.StrengthStrong: strong, v1alpha1.StrengthModerate: moderate, v1alpha1.StrengthWeak: weak}

// idForm is what a catalog id looks like; custom entries are
// toolchain.<name> only.
var idForm = regexp.MustCompile(`^(toolchain|build)\.[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// compileDetector compiles entries on top of base (for the built-in
// catalog, one of only the rules without signals), reporting every
// problem with its field path. builtinIDs allows the build.* ids of
// slimgate's own catalog. Base's rules without signals (size,
// inspection, reference, bloat) follow the entries.
func compileDetector(base *detector, entries []v1alpha1.Toolchain, fp *field.Path, builtinIDs bool) (*detector, field.ErrorList) {
	d := &detector{
		fixed:    base.fixed,
		requires: map[string][]string{},
		versions: map[string]versionSpec{},
		pkgNames: map[string][]*pkgSignal{},
		commands: map[string][]*cmdSignal{},
		defaults: map[string][]*cmdSignal{},
	}
	d.rules = slices.Clone(base.rules[:len(base.rules)-len(base.fixed)])
	maps.Copy(d.requires, base.requires)
	maps.Copy(d.versions, base.versions)
	copyLists(d.pkgNames, base.pkgNames)
	copyLists(d.commands, base.commands)
	copyLists(d.defaults, base.defaults)
	d.pkgPatterns = slices.Clone(base.pkgPatterns)
	d.downloads = slices.Clone(base.downloads)
	d.paths = slices.Clone(base.paths)
	d.env = slices.Clone(base.env)
	d.labels = slices.Clone(base.labels)
	dlLits, pkgLits := slices.Clone(base.dlIndex.lits), slices.Clone(base.pkgIndex.lits)
	var errs field.ErrorList
	seen := map[string]bool{}
	for _, r := range d.rules {
		seen[r.ID] = true
	}
	for _, r := range d.fixed {
		seen[r.ID] = true
	}
	for i, e := range entries {
		ep := fp.Index(i)
		switch {
		case !idForm.MatchString(e.ID) || (!builtinIDs && !strings.HasPrefix(e.ID, "toolchain.")):
			errs = append(errs, field.Invalid(ep.Child("id"), e.ID, "must be toolchain.<name> in lower case letters, digits and dashes"))
			continue
		case seen[e.ID]:
			errs = append(errs, field.Duplicate(ep.Child("id"), e.ID))
			continue
		}
		seen[e.ID] = true
		if strings.TrimSpace(e.Title) == "" {
			errs = append(errs, field.Required(ep.Child("title"), ""))
		}
		if strings.TrimSpace(e.Remedy) == "" {
			errs = append(errs, field.Required(ep.Child("remedy"), ""))
		}
		cat := CategoryToolchain
		if strings.HasPrefix(e.ID, "build.") {
			cat = CategoryBuild
		}
		r := Rule{ID: e.ID, Title: e.Title, Category: cat, Description: e.Description, Remedy: e.Remedy}
		if v := e.Version; v != nil {
			parts := int(v.Parts)
			if parts == 0 {
				parts = 1
			}
			if parts > 2 {
				errs = append(errs, field.Invalid(ep.Child("version", "parts"), v.Parts, "must be 1 or 2"))
			}
			d.versions[e.ID] = versionSpec{env: v.Env, parts: parts, fallback: v.Fallback}
			r.fallback = v.Fallback
		}
		d.rules = append(d.rules, r)
		if len(e.Requires) > 0 {
			d.requires[e.ID] = e.Requires
		}
		sp := ep.Child("signals")
		n := 0
		strength := func(p *field.Path, s v1alpha1.Strength, def int) int {
			if s == "" {
				return def
			}
			v, ok := strengths[s]
			if !ok {
				errs = append(errs, field.NotSupported(p.Child("strength"), s, []string{"strong", "moderate", "weak"}))
			}
			return v
		}
		for j, s := range e.Signals.Packages {
			p := sp.Child("packages").Index(j)
			sig := &pkgSignal{signal: signal{rule: e.ID, strength: strength(p, s.Strength, strong), kind: "package"}}
			if len(s.Names) == 0 && s.Pattern == "" {
				errs = append(errs, field.Required(p, "names or a pattern"))
			}
			for _, name := range s.Names {
				name = strings.ToLower(name)
				d.pkgNames[name] = append(d.pkgNames[name], sig)
			}
			if s.Pattern != "" {
				re, lits, err := compileSignalPattern(s.Pattern, true)
				if err != nil {
					errs = append(errs, field.Invalid(p.Child("pattern"), s.Pattern, err.Error()))
				} else {
					sig.re = re
					pkgLits = appendLiterals(pkgLits, lits, len(d.pkgPatterns))
					d.pkgPatterns = append(d.pkgPatterns, sig)
				}
			}
			n++
		}
		for j, s := range e.Signals.Downloads {
			p := sp.Child("downloads").Index(j)
			re, lits, err := compileSignalPattern(s.Pattern, false)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("pattern"), s.Pattern, err.Error()))
				continue
			}
			sig := &downloadSignal{rule: e.ID, strength: strength(p, s.Strength, strong), re: re, homes: s.Homes, unless: s.Unless}
			if s.Runtime != "" {
				if sig.runtime, err = regexp.Compile(s.Runtime); err != nil {
					errs = append(errs, field.Invalid(p.Child("runtime"), s.Runtime, err.Error()))
				}
			}
			dlLits = appendLiterals(dlLits, lits, len(d.downloads))
			d.downloads = append(d.downloads, sig)
			n++
		}
		for j, s := range e.Signals.Paths {
			p := sp.Child("paths").Index(j)
			g, err := glob.Compile(s.Path)
			if err != nil || (!strings.HasPrefix(s.Path, "/") && !strings.HasPrefix(s.Path, "*")) {
				errs = append(errs, field.Invalid(p.Child("path"), s.Path, "must be an absolute path glob"))
				continue
			}
			d.paths = append(d.paths, &pathSignal{signal: signal{rule: e.ID, strength: strength(p, s.Strength, strong), kind: "path"}, g: g})
			n++
		}
		kvs := func(list []v1alpha1.KeyValueSignal, name string, out *[]*kvSignal) {
			for j, s := range list {
				p := sp.Child(name).Index(j)
				g, err := glob.Compile(s.Key)
				if err != nil {
					errs = append(errs, field.Invalid(p.Child("key"), s.Key, err.Error()))
					continue
				}
				sig := &kvSignal{signal: signal{rule: e.ID, strength: strength(p, s.Strength, moderate), kind: name}, key: g}
				if s.Value != "" {
					if sig.value, err = regexp.Compile(s.Value); err != nil {
						errs = append(errs, field.Invalid(p.Child("value"), s.Value, err.Error()))
						continue
					}
				}
				*out = append(*out, sig)
				n++
			}
		}
		kvs(e.Signals.Env, "env", &d.env)
		kvs(e.Signals.Labels, "labels", &d.labels)
		for j, s := range e.Signals.Commands {
			p := sp.Child("commands").Index(j)
			def := strong
			if s.Default {
				def = weak
			}
			sig := &cmdSignal{signal: signal{rule: e.ID, strength: strength(p, s.Strength, def), kind: "command"}, versionChecks: s.VersionChecks}
			ok := len(s.Names) > 0
			if !ok {
				errs = append(errs, field.Required(p.Child("names"), ""))
			}
			for k, a := range s.Args {
				re, err := compileWhole(a)
				if err != nil {
					errs = append(errs, field.Invalid(p.Child("args").Index(k), a, err.Error()))
					ok = false
				}
				sig.args = append(sig.args, re)
			}
			if s.AnyArg != "" {
				re, err := compileWhole(s.AnyArg)
				if err != nil {
					errs = append(errs, field.Invalid(p.Child("anyArg"), s.AnyArg, err.Error()))
					ok = false
				}
				sig.anyArg = re
			}
			if !ok {
				continue
			}
			index := d.commands
			if s.Default {
				index = d.defaults
			}
			for _, name := range s.Names {
				index[name] = append(index[name], sig)
			}
			n++
		}
		if n == 0 && !builtinIDs {
			errs = append(errs, field.Required(sp, "at least one signal"))
		}
	}
	for i, e := range entries {
		for j, req := range e.Requires {
			if !seen[req] || req == e.ID {
				errs = append(errs, field.Invalid(fp.Index(i).Child("requires").Index(j), req, "names no other rule of the catalog"))
			}
		}
	}
	d.rules = append(d.rules, d.fixed...)
	d.dlIndex = newLiteralIndex(dlLits)
	d.pkgIndex = newLiteralIndex(pkgLits)
	return d, errs
}

// copyLists copies the lists of src into dst, each list cloned: appending
// to dst's never writes into src's.
func copyLists[V any](dst, src map[string][]V) {
	for k, v := range src {
		dst[k] = slices.Clone(v)
	}
}

// appendLiterals indexes the literals lits of pattern id.
func appendLiterals(index []literal, lits []string, id int) []literal {
	for _, l := range lits {
		index = append(index, literal{text: l, id: id})
	}
	return index
}

// compileWhole compiles a command argument pattern, anchored at both ends.
func compileWhole(p string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + p + `)$`)
}

// compileSignalPattern compiles a catalog pattern, case-insensitive, anchored
// at both ends for a package name, and returns the literals (lower case)
// of which one must occur wherever it matches.
func compileSignalPattern(p string, whole bool) (*regexp.Regexp, []string, error) {
	src := `(?i)` + p
	if whole {
		src = `(?i)^(?:` + p + `)$`
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil, nil, err
	}
	lits := requiredLiterals(parsed.Simplify())
	if len(lits) == 0 {
		return nil, nil, fmt.Errorf("needs a literal of at least %d characters that every match contains", minLiteral)
	}
	for _, l := range lits {
		if len(l) < minLiteral {
			return nil, nil, fmt.Errorf("every alternative needs a literal of at least %d characters (%q is shorter)", minLiteral, l)
		}
	}
	return re, lits, nil
}

// requiredLiterals returns literals, lower case, one of which every match
// of re contains; nil when it finds none.
func requiredLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{strings.ToLower(string(re.Rune))}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			l := requiredLiterals(sub)
			if l == nil {
				return nil
			}
			out = append(out, l...)
		}
		return out
	case syntax.OpConcat:
		// The best set is the one whose shortest literal is longest;
		// adjacent parts that match a few fixed strings join into one
		// set ("g(cc|\+\+)" into gcc, g++).
		var best []string
		score := func(ls []string) int {
			m := -1
			for _, l := range ls {
				if m < 0 || len(l) < m {
					m = len(l)
				}
			}
			return m
		}
		var run []string
		flush := func() {
			if run != nil && score(run) > score(best) {
				best = run
			}
			run = nil
		}
		for _, sub := range re.Sub {
			if set := exactStrings(sub); set != nil {
				if run != nil {
					if p := product(run, set); p != nil {
						run = p
						continue
					}
					flush()
				}
				run = set
				continue
			}
			flush()
			if l := requiredLiterals(sub); l != nil && score(l) > score(best) {
				best = l
			}
		}
		flush()
		return best
	}
	if set := exactStrings(re); set != nil && !slices.Contains(set, "") {
		return set
	}
	return nil
}

// maxExact bounds the strings exactStrings enumerates.
const maxExact = 32

// exactStrings returns the strings, lower case, re matches when they are
// few; nil otherwise.
func exactStrings(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{strings.ToLower(string(re.Rune))}
	case syntax.OpEmptyMatch:
		return []string{""}
	case syntax.OpCapture:
		return exactStrings(re.Sub[0])
	case syntax.OpQuest:
		if set := exactStrings(re.Sub[0]); set != nil {
			return append([]string{""}, set...)
		}
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set := exactStrings(sub)
			if set == nil || len(out)+len(set) > maxExact {
				return nil
			}
			out = append(out, set...)
		}
		return out
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set := exactStrings(sub)
			if set == nil {
				return nil
			}
			if out = product(out, set); out == nil {
				return nil
			}
		}
		return out
	case syntax.OpCharClass:
		// Only small classes, such as the case pairs of a letter.
		n := 0
		for i := 0; i+1 < len(re.Rune); i += 2 {
			n += int(re.Rune[i+1]-re.Rune[i]) + 1
		}
		if n > 4 {
			return nil
		}
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) == maxExact {
					return nil
				}
				out = append(out, strings.ToLower(string(r)))
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return nil
}

// product joins every string of a with every string of b; nil past
// maxExact.
func product(a, b []string) []string {
	if len(a)*len(b) > maxExact {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

// literal is one required literal of pattern id.
type literal struct {
	text string
	id   int
}

// literalIndex finds, in one pass over a text, the patterns whose
// required literals it contains (ASCII case-insensitively), by the first
// two bytes of each literal.
type literalIndex struct {
	lits  []literal
	pairs [1 << 16 / 64]uint64
	by    map[uint16][]int // pair -> indexes into lits
}

func newLiteralIndex(lits []literal) literalIndex {
	ix := literalIndex{lits: lits, by: map[uint16][]int{}}
	for i, l := range lits {
		k := pairKey(l.text[0], l.text[1])
		ix.pairs[k>>6] |= 1 << (k & 63)
		ix.by[k] = append(ix.by[k], i)
	}
	return ix
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func pairKey(a, b byte) uint16 { return uint16(lower(a))<<8 | uint16(lower(b)) }

// candidates marks in seen (indexed by pattern id) the patterns one of
// whose literals s contains, and reports whether it marked any.
func (ix *literalIndex) candidates(s string, seen []bool) bool {
	found := false
	for i := 0; i+1 < len(s); i++ {
		k := pairKey(s[i], s[i+1])
		if ix.pairs[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		for _, li := range ix.by[k] {
			l := ix.lits[li]
			if !seen[l.id] && len(s)-i >= len(l.text) && strings.EqualFold(s[i:i+len(l.text)], l.text) {
				seen[l.id] = true
				found = true
			}
		}
	}
	return found
}

// pathMatches reports whether p, or a folder it is in, matches g.
func pathMatches(g glob.Pattern, p string) bool {
	p = path.Clean(p)
	for {
		if g.Match(p) {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			return false
		}
		p = p[:i]
	}
}

// customLimits are the bounds of spec.toolchains.custom, keyed as the
// CRD's schema path under spec.toolchains and keyword. The CRD's markers
// carry the same numbers (TestLimitsMatchCRD); checkCustomLimits enforces
// them for policies that never meet the API server (slimgate check).
var customLimits = map[string]int{
	"custom maxItems":                                32,
	"custom[].id maxLength":                          64,
	"custom[].title maxLength":                       64,
	"custom[].description maxLength":                 1024,
	"custom[].remedy maxLength":                      1024,
	"custom[].requires maxItems":                     8,
	"custom[].requires[] maxLength":                  64,
	"custom[].version.env maxItems":                  4,
	"custom[].version.env[] maxLength":               128,
	"custom[].version.fallback maxLength":            32,
	"custom[].signals.packages maxItems":             32,
	"custom[].signals.packages[].names maxItems":     64,
	"custom[].signals.packages[].names[] maxLength":  128,
	"custom[].signals.packages[].pattern maxLength":  512,
	"custom[].signals.downloads maxItems":            32,
	"custom[].signals.downloads[].pattern maxLength": 512,
	"custom[].signals.downloads[].unless maxLength":  64,
	"custom[].signals.downloads[].homes maxItems":    4,
	"custom[].signals.downloads[].homes[] maxLength": 128,
	"custom[].signals.downloads[].runtime maxLength": 512,
	"custom[].signals.paths maxItems":                32,
	"custom[].signals.paths[].path maxLength":        256,
	"custom[].signals.env maxItems":                  32,
	"custom[].signals.env[].key maxLength":           256,
	"custom[].signals.env[].value maxLength":         512,
	"custom[].signals.labels maxItems":               32,
	"custom[].signals.labels[].key maxLength":        256,
	"custom[].signals.labels[].value maxLength":      512,
	"custom[].signals.commands maxItems":             32,
	"custom[].signals.commands[].names maxItems":     16,
	"custom[].signals.commands[].names[] maxLength":  64,
	"custom[].signals.commands[].args maxItems":      4,
	"custom[].signals.commands[].args[] maxLength":   256,
	"custom[].signals.commands[].anyArg maxLength":   256,
}

// checkCustomLimits reports the fields of custom entries past their
// bounds: every list and string whose schema path customLimits names.
func checkCustomLimits(fp *field.Path, entries []v1alpha1.Toolchain) field.ErrorList {
	var errs field.ErrorList
	checkLimits(&errs, fp, "custom", reflect.ValueOf(entries))
	return errs
}

// checkLimits checks v, found at p, against the customLimits of its schema
// path key ("custom[].signals.env[].key"), and then what v holds. Fields
// are found by their JSON names.
func checkLimits(errs *field.ErrorList, p *field.Path, key string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			checkLimits(errs, p, key, v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
				checkLimits(errs, p.Child(name), key+"."+name, v.Field(i))
			}
		}
	case reflect.Slice:
		if limit, ok := customLimits[key+" maxItems"]; ok && v.Len() > limit {
			*errs = append(*errs, field.TooMany(p, v.Len(), limit))
		}
		for i := range v.Len() {
			checkLimits(errs, p.Index(i), key+"[]", v.Index(i))
		}
	case reflect.String:
		if limit, ok := customLimits[key+" maxLength"]; ok && v.Len() > limit {
			*errs = append(*errs, field.TooLong(p, "", limit))
		}
	}
}

// customRules compiles a policy's custom toolchains on top of the
// built-in catalog: the rules the policy can name, and the problems.
func customRules(fp *field.Path, custom []v1alpha1.Toolchain) (*detector, field.ErrorList) {
	if len(custom) == 0 {
		return builtin(), nil
	}
	if errs := checkCustomLimits(fp, custom); len(errs) > 0 {
		// Past its bounds, an entry is not compiled at all.
		return builtin(), errs
	}
	return compileDetector(builtin(), custom, fp, false)
}
