package policy

import "testing"

// TestFixedRules: the rules without signals come from catalog.yaml's
// fixed section and follow the toolchain and build entries, in this order
// and with these categories; their ids are the Rule* constants the engine
// reports.
func TestFixedRules(t *testing.T) {
	want := []struct {
		id       string
		category Category
	}{
		{RuleBloatRemovedLater, CategoryBloat},
		{RuleSizeCompressed, CategorySize},
		{RuleSizeLayers, CategorySize},
		{RuleInspectionInvalid, CategoryInspection},
		{RuleInspectionFailed, CategoryInspection},
		{RuleReferenceDigest, CategoryReference},
	}
	rules := Rules()
	if len(rules) < len(want) {
		t.Fatalf("%d rules, want at least %d", len(rules), len(want))
	}
	tail := rules[len(rules)-len(want):]
	for i, w := range want {
		r := tail[i]
		if r.ID != w.id || r.Category != w.category || r.Title == "" || r.Description == "" || r.Remedy == "" {
			t.Errorf("rule %d from the end: %+v, want id %s in %s with a title, description and remedy", len(want)-i, r, w.id, w.category)
		}
	}
	for _, r := range rules[:len(rules)-len(want)] {
		if r.Category != CategoryToolchain && r.Category != CategoryBuild {
			t.Errorf("%s (%s) is reported before the toolchain and build rules end", r.ID, r.Category)
		}
	}
}
