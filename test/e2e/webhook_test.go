package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"slimgate.dev/slimgate/api/v1alpha1"
)

// caseLabels labels a case's namespaces and its policies' selectors.
func caseLabels(t *testing.T) map[string]string {
	v := strings.ReplaceAll(t.Name(), "/", "-")
	return map[string]string{caseLabel: v[:min(len(v), 60)]}
}

func TestEnforceRefusesGoSDKImage(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	p := policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))

	_, err := create(t, pod(ns, "sdk", e2e.reg.GoSDKApp()))
	mustDeny(t, err, "["+p.Name+"]", `container "app"`, e2e.reg.GoSDKApp(), "toolchain.go", "remedy:")
	mentionsGoSDK(t, err.Error())
	t.Logf("denial as the user sees it:\n%v", err)

	if _, err := create(t, pod(ns, "slim", e2e.reg.StaticApp())); err != nil {
		t.Errorf("multi-stage image refused: %v", err)
	}
	waitEvent(t, ns, "sdk", "ImageRejected")
}

func TestEnforceRefusesWorkloads(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	labels := map[string]string{"app": "sdk"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: e2e.reg.GoSDKApp()}}},
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sdk"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	_, err := create(t, dep)
	mustDeny(t, err, "spec.template.spec.containers[0].image", e2e.reg.GoSDKApp())
	mentionsGoSDK(t, err.Error())

	jobTmpl := tmpl
	jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sdk"},
		Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobTmpl}}}}
	_, err = create(t, cj)
	mustDeny(t, err, "spec.jobTemplate.spec.template.spec.containers[0].image")
}

// admittedUnder creates Pod "sdk", running the Go SDK image, in a fresh
// namespace under a policy in mode, which must admit it; it returns the
// namespace, the policy and the warnings received.
func admittedUnder(t *testing.T, mode v1alpha1.Mode) (string, *v1alpha1.SlimImagePolicy, []string) {
	t.Helper()
	ns := namespace(t, caseLabels(t))
	p := policy(t, spec(mode, caseLabels(t)))
	warnings, err := create(t, pod(ns, "sdk", e2e.reg.GoSDKApp()))
	if err != nil {
		t.Fatalf("%s refused: %v", mode, err)
	}
	return ns, p, warnings
}

func TestAuditAdmitsAndRecords(t *testing.T) {
	ns, p, warnings := admittedUnder(t, v1alpha1.ModeAudit)
	if len(warnings) != 0 {
		t.Errorf("audit returned warnings %q", warnings)
	}
	ev := waitEvent(t, ns, "sdk", "ImageAudited")
	if ev.Type != corev1.EventTypeWarning || ev.Regarding.Kind != "Pod" || ev.Related == nil || ev.Related.Name != p.Name ||
		ev.ReportingController != "slimgate" || ev.Action != "Admit" {
		t.Errorf("event = %+v", ev)
	}
	mentionsGoSDK(t, ev.Note)

	// A Pod that names a ReplicaSet of a Deployment as its controller
	// (generateName only), created by the test rather than by the
	// ReplicaSet controller: nothing verified that owner, so the Event
	// regards the Pod the API server created, under its generated name.
	rs := replicaSetOfDeployment(t, ns, e2e.reg.GoSDKApp())
	made := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: rs.Name + "-", Labels: rs.Spec.Template.Labels}, Spec: rs.Spec.Template.Spec}
	controlledBy(made, "apps/v1", "ReplicaSet", rs.Name, rs.UID)
	if err := e2e.client.Create(context.Background(), made); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, ns, made.Name, "ImageAudited")
	if ev.Regarding.Kind != "Pod" || ev.Regarding.UID != made.UID {
		t.Errorf("event on the made Pod regards %s %s (uid %s)", ev.Regarding.Kind, ev.Regarding.Name, ev.Regarding.UID)
	}
}

// replicaSetOfDeployment creates Deployment "web", running image, and
// ReplicaSet "web-5d4f8" with its template, controlled by the Deployment
// as the Deployment controller would make it (none runs here). It
// returns the ReplicaSet.
func replicaSetOfDeployment(t *testing.T, ns, image string) *appsv1.ReplicaSet {
	t.Helper()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	if err := e2e.client.Create(context.Background(), dep); err != nil {
		t.Fatalf("creating Deployment %s: %v", dep.Name, err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-5d4f8", Labels: labels},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	controlledBy(rs, "apps/v1", "Deployment", dep.Name, dep.UID)
	if err := e2e.client.Create(context.Background(), rs); err != nil {
		t.Fatalf("creating ReplicaSet %s: %v", rs.Name, err)
	}
	return rs
}

// controlledBy sets obj's controller owner reference.
func controlledBy(obj metav1.Object, apiVersion, kind, name string, uid types.UID) {
	yes := true
	obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}})
}

func TestWarnAdmitsWithWarning(t *testing.T) {
	ns, p, warnings := admittedUnder(t, v1alpha1.ModeWarn)
	if len(warnings) == 0 {
		t.Fatal("no warning received")
	}
	for _, w := range warnings {
		if !strings.HasPrefix(w, "["+p.Name+`] container "app": `) || len(w) >= 120 {
			t.Errorf("warning %q", w)
		}
	}
	waitEvent(t, ns, "sdk", "ImageWarned")
}

func TestOptInByNamespaceLabel(t *testing.T) {
	optIn := caseLabels(t)
	labelled := namespace(t, optIn)
	plain := namespace(t, nil)
	policy(t, spec(v1alpha1.ModeEnforce, optIn))

	_, err := create(t, pod(labelled, "sdk", e2e.reg.GoSDKApp()))
	mustDeny(t, err, e2e.reg.GoSDKApp())
	if _, err := create(t, pod(plain, "sdk", e2e.reg.GoSDKApp())); err != nil {
		t.Fatalf("unlabelled namespace: %v", err)
	}

	// Labelling the namespace later takes effect without a restart.
	ctx := context.Background()
	var ns corev1.Namespace
	if err := e2e.client.Get(ctx, client.ObjectKey{Name: plain}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = optIn
	if err := e2e.client.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		err := e2e.client.Create(ctx, pod(plain, "sdk2", e2e.reg.GoSDKApp()), client.DryRunAll)
		if err == nil {
			return errAdmitted
		}
		return nil
	})
	_, err = create(t, pod(plain, "sdk3", e2e.reg.GoSDKApp()))
	mustDeny(t, err, e2e.reg.GoSDKApp())
}

func TestClusterAuditWithOptInEnforce(t *testing.T) {
	optIn := caseLabels(t)
	labelled := namespace(t, optIn)
	plain := namespace(t, nil)
	audit := policy(t, spec(v1alpha1.ModeAudit, nil))
	enforce := policy(t, spec(v1alpha1.ModeEnforce, optIn))

	_, err := create(t, pod(labelled, "sdk", e2e.reg.GoSDKApp()))
	mustDeny(t, err, "["+enforce.Name+"]")
	if strings.Contains(err.Error(), "["+audit.Name+"]") {
		t.Errorf("denial speaks for the audit policy too:\n%v", err)
	}
	if _, err := create(t, pod(plain, "sdk", e2e.reg.GoSDKApp())); err != nil {
		t.Fatalf("audit-only namespace refused: %v", err)
	}
	ev := waitEvent(t, plain, "sdk", "ImageAudited")
	if ev.Related == nil || ev.Related.Name != audit.Name {
		t.Errorf("event related to %+v, want %s", ev.Related, audit.Name)
	}
}

func TestDryRunRecordsNothing(t *testing.T) {
	enforceNS := namespace(t, caseLabels(t))
	policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	warnLabels := map[string]string{caseLabel: "warn-" + caseLabels(t)[caseLabel]}
	warnNS := namespace(t, warnLabels)
	policy(t, spec(v1alpha1.ModeWarn, warnLabels))

	_, err := create(t, pod(enforceNS, "dry", e2e.reg.GoSDKApp()), client.DryRunAll)
	mustDeny(t, err, e2e.reg.GoSDKApp())
	warnings, err := create(t, pod(warnNS, "dry", e2e.reg.GoSDKApp()), client.DryRunAll)
	if err != nil || len(warnings) == 0 {
		t.Fatalf("dry-run under Warn: err %v, warnings %q", err, warnings)
	}

	// A real request afterwards records its Event; by then the dry runs
	// would have recorded theirs.
	if _, err := create(t, pod(warnNS, "real", e2e.reg.GoSDKApp())); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, warnNS, "real", "ImageWarned")
	for _, ns := range []string{enforceNS, warnNS} {
		evs, err := events(ns, "dry")
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 0 {
			t.Errorf("dry-run recorded %d events in %s: %+v", len(evs), ns, evs)
		}
	}
}

func TestLabelOnlyUpdateAllowed(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	ctx := context.Background()
	old := pod(ns, "running", e2e.reg.GoSDKApp())
	if err := e2e.client.Create(ctx, old); err != nil {
		t.Fatalf("creating before any policy: %v", err)
	}
	policy(t, spec(v1alpha1.ModeEnforce, caseLabels(t)))
	_, err := create(t, pod(ns, "new", e2e.reg.GoSDKApp()))
	mustDeny(t, err, e2e.reg.GoSDKApp())

	old.Labels = map[string]string{"tier": "backend"}
	if err := e2e.client.Update(ctx, old); err != nil {
		t.Fatalf("label-only update refused: %v", err)
	}
}

func TestRegistryUnreachable(t *testing.T) {
	image := e2e.unreachable + "/gone:1"
	for _, c := range []struct {
		on    v1alpha1.InspectionErrorAction
		admit bool
	}{{v1alpha1.InspectionErrorDeny, false}, {v1alpha1.InspectionErrorAllow, true}} {
		t.Run(string(c.on), func(t *testing.T) {
			ns := namespace(t, caseLabels(t))
			s := spec(v1alpha1.ModeEnforce, caseLabels(t))
			s.OnInspectionError = c.on
			policy(t, s)
			start := time.Now()
			_, err := create(t, pod(ns, "gone", image))
			if took := time.Since(start); took >= webhookTimeout {
				t.Errorf("answered in %s, not within the %s webhook timeout", took, webhookTimeout)
			}
			if !c.admit {
				mustDeny(t, err, image, "inspection.failed")
				return
			}
			if err != nil {
				t.Fatalf("onInspectionError Allow refused: %v", err)
			}
			ev := waitEvent(t, ns, "gone", "InspectionFailed")
			if !strings.Contains(ev.Note, "onInspectionError is Allow") || !strings.Contains(ev.Note, image) {
				t.Errorf("event note does not say why:\n%s", ev.Note)
			}
		})
	}
}

func TestInvalidPolicyRefusedByAPIServer(t *testing.T) {
	zero := int32(0)
	for _, c := range []struct {
		name  string
		spec  v1alpha1.SlimImagePolicySpec
		field string
	}{
		{"mode", v1alpha1.SlimImagePolicySpec{Mode: "Block"}, "spec.mode"},
		{"maxLayers", v1alpha1.SlimImagePolicySpec{SizeBudget: v1alpha1.SizeBudget{MaxLayers: &zero}}, "spec.sizeBudget.maxLayers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "invalid-" + strings.ToLower(c.name)}, Spec: c.spec}
			mustRefuse(t, p, c.field)
		})
	}
}

func TestPullSecretRegistry(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	s := spec(v1alpha1.ModeEnforce, caseLabels(t))
	s.OnInspectionError = v1alpha1.InspectionErrorDeny
	policy(t, s)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pull"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: e2e.reg.DockerConfigJSON()},
	}
	if err := e2e.client.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	// Without the secret the registry refuses slimgate: inspection fails.
	_, err := create(t, pod(ns, "anonymous", e2e.reg.PrivateGoSDKApp()))
	mustDeny(t, err, "inspection.failed")

	// With it, the image is read and judged on its history.
	p := pod(ns, "authed", e2e.reg.PrivateGoSDKApp())
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
	_, err = create(t, p)
	mustDeny(t, err, "toolchain.go")
	mentionsGoSDK(t, err.Error())
}

func TestSizeBudget(t *testing.T) {
	ns := namespace(t, caseLabels(t))
	s := spec(v1alpha1.ModeEnforce, caseLabels(t))
	budget := resource.MustParse("1Mi")
	s.SizeBudget.MaxCompressed = &budget
	policy(t, s)
	_, err := create(t, pod(ns, "big", e2e.reg.BigStaticApp()))
	mustDeny(t, err, e2e.reg.BigStaticApp(), "budget 1Mi", "budget 1048576 bytes")
	if _, err := create(t, pod(ns, "slim", e2e.reg.StaticApp())); err != nil {
		t.Errorf("small image refused: %v", err)
	}
}
