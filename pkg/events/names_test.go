package events

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Event names are valid object names whatever the regarding object's
// name: a name of the longest length is cut to make room for the suffix,
// and the cut may fall just after a '-' or a '.', which a name may not
// end a label with.
func TestEventNamesAreValidForLongNames(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	for shift := range 4 {
		name := strings.Repeat("x", shift) + strings.Repeat("a-b.", 70)
		name = name[:252] + "z"
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Fatalf("test name %q is not valid: %v", name, errs)
		}
		names := map[string]string{
			"eventName": eventName(name, now),
			"onceName":  onceName(key{regarding: corev1.ObjectReference{Name: name}, image: "app:1"}),
		}
		for f, got := range names {
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("%s of a name shifted by %d: %q is not a valid name: %v", f, shift, got, errs)
			}
		}
	}
}
