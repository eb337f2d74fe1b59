package exception

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/policy"
)

var (
	created = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	digestA = "sha256:" + fmt.Sprintf("%064x", 0xa)
	digestB = "sha256:" + fmt.Sprintf("%064x", 0xb)
	indexA  = "sha256:" + fmt.Sprintf("%064x", 0x1a)
)

// exc returns an exception named name in namespace "team", created at
// created and expiring after lasts, with the spec spec (reason and expires
// filled in).
func exc(name string, lasts time.Duration, spec v1alpha1.SlimImageExceptionSpec) *v1alpha1.SlimImageException {
	spec.Reason = "CI runner, fixed next quarter"
	spec.Expires = metav1.NewTime(created.Add(lasts))
	if spec.Policies == nil {
		spec.Policies = []string{"*"}
	}
	if spec.Rules == nil {
		spec.Rules = []string{"*"}
	}
	return &v1alpha1.SlimImageException{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", CreationTimestamp: metav1.NewTime(created)},
		Spec:       spec,
	}
}

func TestCovers(t *testing.T) {
	base := Subject{Policy: "default", Rule: "toolchain.go", Image: "ghcr.io/org/ci:1", Digests: []string{digestA, indexA},
		Container: "runner", Workloads: []Workload{{Kind: "Pod", Name: "ci-abc"}, {Kind: "ReplicaSet", Name: "ci-5f7"}, {Kind: "Deployment", Name: "ci"}}}
	with := func(f func(*Subject)) Subject {
		s := base
		f(&s)
		return s
	}
	cases := []struct {
		name string
		spec v1alpha1.SlimImageExceptionSpec
		subj Subject
		want bool
	}{
		{"image glob", v1alpha1.SlimImageExceptionSpec{Images: []string{"ghcr.io/org/ci:*"}}, base, true},
		{"image glob, other repository", v1alpha1.SlimImageExceptionSpec{Images: []string{"ghcr.io/org/app:*"}}, base, false},
		{"normalised Docker Hub spelling", v1alpha1.SlimImageExceptionSpec{Images: []string{"docker.io/library/golang:*"}},
			with(func(s *Subject) { s.Image = "golang:1.24" }), true},
		{"manifest digest", v1alpha1.SlimImageExceptionSpec{Digests: []string{digestA}}, base, true},
		{"index digest", v1alpha1.SlimImageExceptionSpec{Digests: []string{indexA}}, base, true},
		{"a new push to the same tag", v1alpha1.SlimImageExceptionSpec{Images: []string{"ghcr.io/org/ci:1"}, Digests: []string{digestA}},
			with(func(s *Subject) { s.Digests = []string{digestB, ""} }), false},
		{"digest and image both hold", v1alpha1.SlimImageExceptionSpec{Images: []string{"ghcr.io/org/ci:1"}, Digests: []string{digestA}}, base, true},
		{"digest of another repository's image", v1alpha1.SlimImageExceptionSpec{Images: []string{"ghcr.io/org/other:*"}, Digests: []string{digestA}}, base, false},
		{"empty digest judged matches nothing", v1alpha1.SlimImageExceptionSpec{Digests: []string{digestA}},
			with(func(s *Subject) { s.Digests = []string{"", ""} }), false},
		{"other policy", v1alpha1.SlimImageExceptionSpec{Policies: []string{"strict"}, Images: []string{"*"}}, base, false},
		{"policy glob", v1alpha1.SlimImageExceptionSpec{Policies: []string{"def*"}, Images: []string{"*"}}, base, true},
		{"rule glob", v1alpha1.SlimImageExceptionSpec{Rules: []string{"toolchain.*"}, Images: []string{"*"}}, base, true},
		{"other rule", v1alpha1.SlimImageExceptionSpec{Rules: []string{"size.*"}, Images: []string{"*"}}, base, false},
		{"inspection.invalid is never waived", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}},
			with(func(s *Subject) { s.Rule = policy.RuleInspectionInvalid }), false},
		{"inspection.failed even by name", v1alpha1.SlimImageExceptionSpec{Rules: []string{"inspection.failed"}, Images: []string{"*"}},
			with(func(s *Subject) { s.Rule = "inspection.failed" }), false},
		{"container", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Containers: []string{"runner"}}, base, true},
		{"other container", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Containers: []string{"app"}}, base, false},
		{"no container outside a cluster", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Containers: []string{"runner"}},
			with(func(s *Subject) { s.Container = "" }), false},
		{"workload", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Workloads: []v1alpha1.ExceptionWorkload{{Kind: "Deployment", Name: "ci"}}}, base, true},
		{"workload of another kind", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Workloads: []v1alpha1.ExceptionWorkload{{Kind: "StatefulSet", Name: "ci"}}}, base, false},
		{"no workload outside a cluster", v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}, Workloads: []v1alpha1.ExceptionWorkload{{Kind: "Deployment", Name: "ci"}}},
			with(func(s *Subject) { s.Workloads = nil }), false},
		{"neither images nor digests covers nothing", v1alpha1.SlimImageExceptionSpec{}, base, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compile(exc("e", time.Hour, tc.spec)).Covers(tc.subj); got != tc.want {
				t.Errorf("Covers = %v, want %v", got, tc.want)
			}
		})
	}
}

// An exception applies until its expires, not a moment longer: the time
// is the caller's, so a clock moved past expires stops it at once.
func TestSelectExpiry(t *testing.T) {
	obj := exc("ci", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}})
	e := Compile(obj)
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{created, 1},
		{e.Expires.Add(-time.Nanosecond), 1},
		{e.Expires, 0},
		{e.Expires.Add(time.Second), 0},
	} {
		if got, _ := Select([]*v1alpha1.SlimImageException{obj}, tc.at); len(got) != tc.want || e.ActiveAt(tc.at) != (tc.want == 1) {
			t.Errorf("at %s: %d selected, want %d", tc.at, len(got), tc.want)
		}
	}
	if !e.ExpiringAt(created) || e.ExpiringAt(e.Expires) {
		t.Errorf("an exception of an hour is expiring while active only")
	}
	long := Compile(exc("long", 30*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	if long.ExpiringAt(created) || !long.ExpiringAt(long.Expires.Add(-ExpiringWithin)) {
		t.Errorf("a 30-day exception is expiring only in its last %s", ExpiringWithin)
	}
}

// Select considers at most MaxPerNamespace exceptions, by name, and
// expired ones and ones being deleted take no place.
func TestSelectBound(t *testing.T) {
	var all []*v1alpha1.SlimImageException
	for i := range MaxPerNamespace + 10 {
		all = append(all, exc(fmt.Sprintf("e%03d", MaxPerNamespace+10-i), time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	}
	for i := range 5 {
		all = append(all, exc(fmt.Sprintf("a%03d", i), time.Minute, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	}
	gone := exc("b-gone", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}})
	gone.DeletionTimestamp = &metav1.Time{Time: created}
	all = append(all, gone)
	got, left := Select(all, created.Add(30*time.Minute))
	if len(got) != MaxPerNamespace || left != 10 {
		t.Fatalf("selected %d, left %d; want %d and 10", len(got), left, MaxPerNamespace)
	}
	if got[0].Name != "e001" || got[len(got)-1].Name != fmt.Sprintf("e%03d", MaxPerNamespace) {
		t.Errorf("selected %s..%s, want the first by name", got[0].Name, got[len(got)-1].Name)
	}
}

func TestWaive(t *testing.T) {
	r := policy.Result{Image: "ghcr.io/org/ci:1", Digest: digestA, Verdict: policy.VerdictDeny, Findings: []policy.Finding{
		{Rule: "toolchain.go", Action: policy.ActionDeny},
		{Rule: "size.compressed", Action: policy.ActionDeny},
	}}
	goOnly := Compile(exc("go-only", time.Hour, v1alpha1.SlimImageExceptionSpec{Rules: []string{"toolchain.*"}, Digests: []string{digestA}}))
	sizes := Compile(exc("sizes", time.Hour, v1alpha1.SlimImageExceptionSpec{Rules: []string{"size.*"}, Images: []string{"ghcr.io/org/*"}}))
	s := Subject{Policy: "default", Image: r.Image}

	got, used := Waive(r, []*Exception{goOnly}, s)
	if got.Verdict != policy.VerdictDeny || got.Findings[0].Excepted == nil || got.Findings[1].Excepted != nil {
		t.Errorf("one of two denials waived: verdict %s, findings %+v", got.Verdict, got.Findings)
	}
	if len(used) != 1 || used[0] != goOnly {
		t.Errorf("used %v, want go-only", used)
	}
	if r.Findings[0].Excepted != nil {
		t.Fatal("Waive modified the shared result")
	}

	got, used = Waive(r, []*Exception{goOnly, sizes}, s)
	if got.Verdict != policy.VerdictAllow || len(used) != 2 {
		t.Errorf("both waived: verdict %s, %d used", got.Verdict, len(used))
	}
	want := &policy.Waiver{Exception: "sizes", Namespace: "team", Reason: "CI runner, fixed next quarter", Expires: created.Add(time.Hour)}
	if diff := cmp.Diff(want, got.Findings[1].Excepted); diff != "" {
		t.Errorf("waiver (-want +got):\n%s", diff)
	}

	// The digest judged is the result's: another push is not waived.
	pushed := r
	pushed.Digest = digestB
	if got, _ := Waive(pushed, []*Exception{goOnly}, s); got.Findings[0].Excepted != nil {
		t.Error("a digest exception waived a finding about another digest")
	}
}

func TestGate(t *testing.T) {
	no := false
	day := metav1.Duration{Duration: 24 * time.Hour}
	short := Compile(exc("short", time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	month := Compile(exc("month", 30*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	year := Compile(exc("year", 365*24*time.Hour, v1alpha1.SlimImageExceptionSpec{Images: []string{"*"}}))
	all := []*Exception{short, month, year}
	team := map[string]string{"team": "ci"}
	cases := []struct {
		name  string
		rules v1alpha1.ExceptionRules
		ns    map[string]string
		want  []string
	}{
		{"defaults: allowed everywhere for 90 days", v1alpha1.ExceptionRules{}, team, []string{"short", "month"}},
		{"not allowed", v1alpha1.ExceptionRules{Allowed: &no}, team, nil},
		{"selected namespace", v1alpha1.ExceptionRules{NamespaceSelector: &metav1.LabelSelector{MatchLabels: team}}, team, []string{"short", "month"}},
		{"other namespace", v1alpha1.ExceptionRules{NamespaceSelector: &metav1.LabelSelector{MatchLabels: team}}, map[string]string{"team": "web"}, nil},
		{"shorter maxDuration", v1alpha1.ExceptionRules{MaxDuration: &day}, team, []string{"short"}},
		{"bad selector selects nothing", v1alpha1.ExceptionRules{NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}}}, team, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGate(&v1alpha1.SlimImagePolicySpec{Exceptions: tc.rules})
			var got []string
			for _, e := range g.Honours(tc.ns, all) {
				got = append(got, e.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("honoured (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkloads(t *testing.T) {
	yes := true
	owned := func(kind, name string, labels map[string]string) *metav1.ObjectMeta {
		return &metav1.ObjectMeta{Name: "x", Labels: labels, OwnerReferences: []metav1.OwnerReference{
			{Kind: "ConfigMap", Name: "not-the-controller"}, {Kind: kind, Name: name, Controller: &yes}}}
	}
	cases := []struct {
		name string
		kind string
		obj  *metav1.ObjectMeta
		want []Workload
	}{
		{"bare pod", "Pod", &metav1.ObjectMeta{Name: "p"}, []Workload{{"Pod", "p"}}},
		{"generateName only", "Pod", &metav1.ObjectMeta{GenerateName: "p-"}, nil},
		{"pod of a deployment", "Pod", owned("ReplicaSet", "web-5f7d9", map[string]string{"pod-template-hash": "5f7d9"}),
			[]Workload{{"Pod", "x"}, {"ReplicaSet", "web-5f7d9"}, {"Deployment", "web"}}},
		{"pod of a bare replicaset", "Pod", owned("ReplicaSet", "web", nil), []Workload{{"Pod", "x"}, {"ReplicaSet", "web"}}},
		{"pod of a cronjob", "Pod", owned("Job", "nightly-29150340", nil), []Workload{{"Pod", "x"}, {"Job", "nightly-29150340"}, {"CronJob", "nightly"}}},
		{"replicaset of a deployment", "ReplicaSet", owned("Deployment", "web", nil), []Workload{{"ReplicaSet", "x"}, {"Deployment", "web"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Workloads(tc.kind, tc.obj)); diff != "" {
				t.Errorf("workloads (-want +got):\n%s", diff)
			}
		})
	}
}
