package admission

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
)

func TestExceptionValidator(t *testing.T) {
	month := &metav1.Duration{Duration: 30 * 24 * time.Hour}
	no := false
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}},
		&v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "strict"}, Spec: v1alpha1.SlimImagePolicySpec{
			Exceptions: v1alpha1.ExceptionRules{MaxDuration: month}}},
		&v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "closed"}, Spec: v1alpha1.SlimImagePolicySpec{
			Exceptions: v1alpha1.ExceptionRules{Allowed: &no, MaxDuration: &metav1.Duration{Duration: time.Hour}}}},
	}
	v := &ExceptionValidator{Reader: objectReader(t, objs...), Now: func() time.Time { return created.Add(time.Minute) }}
	day := 24 * time.Hour
	cases := []struct {
		name     string
		policies []string
		lasts    time.Duration
		refused  []string // what the refusal says; none: admitted
		warned   string
	}{
		{"within the default", []string{"default"}, 90 * day, nil, ""},
		{"beyond the default", []string{"default"}, 91 * day, []string{"spec.expires", "91 days after the exception's creation", "90 days policy default allows"}, ""},
		{"beyond a named policy's maxDuration", []string{"strict"}, 31 * day, []string{"30 days policy strict allows", "spec.exceptions.maxDuration 720h0m0s"}, ""},
		{"every policy, the shortest counts", []string{"*"}, 31 * day, []string{"policy strict"}, "policy closed does not honour exceptions"},
		{"a policy that allows none is not a limit", []string{"closed"}, 10 * day, nil, "policy closed does not honour exceptions in namespace team"},
		{"no such policy: the default", []string{"later"}, 91 * day, []string{"more than the default 90 days"}, "no SlimImagePolicy"},
		{"over a year", []string{"closed"}, 366 * day, []string{"no policy allows more than 365 days"}, ""},
		{"already expired", []string{"default"}, 0, []string{"is in the past"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := sie("e", tc.lasts, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}})
			e.Spec.Policies = tc.policies
			warnings, err := v.ValidateCreate(context.Background(), e)
			if len(tc.refused) == 0 && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(tc.refused) > 0 {
				if !apierrors.IsInvalid(err) {
					t.Fatalf("error %v, want an Invalid refusal", err)
				}
				for _, want := range tc.refused {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("refusal does not say %q:\n%v", want, err)
					}
				}
			}
			if tc.warned != "" && !strings.Contains(strings.Join(warnings, "\n"), tc.warned) {
				t.Errorf("warnings %q do not say %q", warnings, tc.warned)
			}
		})
	}
}

// An update that leaves the spec alone passes whatever the policies say
// now (finalizers, labels); one that moves expires is checked again.
func TestExceptionValidatorUpdate(t *testing.T) {
	v := &ExceptionValidator{Reader: objectReader(t), Now: func() time.Time { return created.Add(200 * 24 * time.Hour) }}
	old := sie("e", 30*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}})
	labelled := old.DeepCopy()
	labelled.Labels = map[string]string{"a": "b"}
	if _, err := v.ValidateUpdate(context.Background(), old, labelled); err != nil {
		t.Errorf("a label on an expired exception refused: %v", err)
	}
	extended := old.DeepCopy()
	extended.Spec.Expires = metav1.NewTime(created.Add(210 * 24 * time.Hour))
	if _, err := v.ValidateUpdate(context.Background(), old, extended); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "210 days") {
		t.Errorf("extending past maxDuration: %v, want refused", err)
	}
}
