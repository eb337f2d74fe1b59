package policy

import (
	"slices"
	"strings"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// Category groups the rules of the catalog.
type Category string

const (
	// CategoryToolchain rules find a compiler, SDK or build tool installed
	// in the image.
	CategoryToolchain Category = "toolchain"
	// CategoryBuild rules find a build command run inside the image: the
	// mark of a single-stage Dockerfile.
	CategoryBuild Category = "build"
	// CategorySize rules compare the manifest's figures with a budget.
	CategorySize Category = "size"
	// CategoryInspection holds the rules for images that could not be
	// read: because of the image (inspection.invalid) or of its registry
	// (inspection.failed).
	CategoryInspection Category = "inspection"
	// CategoryBloat rules find bytes that ship without use: a toolchain
	// removed in a later layer than the one that installed it.
	CategoryBloat Category = "bloat"
)

// Rule is one entry of the catalog. Ids are stable: policies name them.
type Rule struct {
	// ID is the stable id, e.g. "toolchain.go".
	ID string `json:"id"`
	// Title is a short name used at the start of finding messages.
	Title string `json:"title"`
	// Category groups the rule.
	Category Category `json:"category"`
	// Description says what the rule looks for.
	Description string `json:"description"`
	// Remedy is what to do instead; "{version}" stands for the version the
	// image declares (e.g. the Go or Java release), when known.
	Remedy string `json:"remedy"`

	// fallback stands for {version} when the image declares none.
	fallback string
}

// RemedyFor fills the rule's remedy template with a version.
func (r Rule) RemedyFor(version string) string {
	if version == "" {
		version = r.fallback
	}
	return strings.ReplaceAll(r.Remedy, "{version}", version)
}

// Rule ids of the catalog.
const (
	RuleToolchainGo        = "toolchain.go"
	RuleToolchainJDK       = "toolchain.jdk"
	RuleToolchainMaven     = "toolchain.maven"
	RuleToolchainGradle    = "toolchain.gradle"
	RuleToolchainRust      = "toolchain.rust"
	RuleToolchainDotnetSDK = "toolchain.dotnet-sdk"
	RuleToolchainCC        = "toolchain.cc"
	RuleToolchainNodeBuild = "toolchain.node-build"
	RuleToolchainComposer  = "toolchain.composer"
	RuleBuildGo            = "build.go"
	RuleBuildMaven         = "build.maven"
	RuleBuildGradle        = "build.gradle"
	RuleBuildCargo         = "build.cargo"
	RuleBuildNpm           = "build.npm"
	RuleBuildYarn          = "build.yarn"
	RuleBuildDotnet        = "build.dotnet"
	RuleBuildMake          = "build.make"
	RuleBuildCC            = "build.cc"
	RuleBuildJavac         = "build.javac"
	RuleBloatRemovedLater  = "bloat.removed-later"
	RuleSizeCompressed     = "size.compressed"
	RuleSizeLayers         = "size.layers"
	RuleInspectionInvalid  = "inspection.invalid"
	RuleInspectionFailed   = "inspection.failed"
	RuleReferenceDigest    = "reference.digest"
)

// catalog returns the built-in rules in the order findings are reported.
// The slice is shared: callers only read it.
func catalog() []Rule { return builtin().rules }

// Rules returns the rule catalog, in reporting order.
func Rules() []Rule { return slices.Clone(catalog()) }

// ruleByID returns the catalog's rule id names: one of the Rule*
// constants, which the catalog test keeps in the catalog (the zero Rule
// for an id it does not hold).
func ruleByID(id string) Rule {
	for _, r := range catalog() {
		if r.ID == id {
			return r
		}
	}
	return Rule{}
}

// catalogIDs lists the ids of the catalog, in reporting order.
func catalogIDs() []string { return ruleIDsOf(catalog()) }

// ruleIDsOf lists the ids of rules.
func ruleIDsOf(rules []Rule) []string {
	ids := make([]string, 0, len(rules))
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	return ids
}

// namesRuleOf reports whether a deny/allow glob names one of rules.
func namesRuleOf(rules []Rule, g glob.Pattern) bool {
	return slices.ContainsFunc(rules, func(r Rule) bool { return g.Match(r.ID) })
}

// selection is the set of rules a policy applies.
type selection struct {
	rules map[string]bool
	// unknown lists the deny/allow entries that name no rule (malformed
	// globs included: they match nothing).
	unknown []string
}

// selectRules computes (deny, or every toolchain, build and bloat rule)
// minus allow, over the built-in catalog. Size rules are governed by the
// size budget and can only be turned off through allow.
func selectRules(t v1alpha1.ToolchainRules) selection { return selectFrom(catalog(), t) }

// selectFrom is selectRules over a catalog of rules.
func selectFrom(rules []Rule, t v1alpha1.ToolchainRules) selection {
	s := selection{rules: map[string]bool{}}
	deny := s.compile(rules, t.Deny)
	allow := s.compile(rules, t.Allow)
	matches := func(gs []glob.Pattern, id string) bool {
		return slices.ContainsFunc(gs, func(g glob.Pattern) bool { return g.Match(id) })
	}
	for _, r := range rules {
		switch r.Category {
		case CategoryToolchain, CategoryBuild, CategoryBloat:
			if len(t.Deny) > 0 && !matches(deny, r.ID) {
				continue
			}
		case CategorySize:
		default:
			continue
		}
		if matches(allow, r.ID) {
			continue
		}
		s.rules[r.ID] = true
	}
	return s
}

// compile compiles deny or allow entries, noting those that name no rule.
func (s *selection) compile(rules []Rule, refs []string) []glob.Pattern {
	out := make([]glob.Pattern, 0, len(refs))
	for _, ref := range refs {
		g, err := glob.Compile(ref)
		if err != nil || !namesRuleOf(rules, g) {
			s.unknown = append(s.unknown, ref)
			continue
		}
		out = append(out, g)
	}
	return out
}
