package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/controller"
	"slimgate.dev/slimgate/internal/devcluster"
	"slimgate.dev/slimgate/internal/devcluster/webhooktest"
	"slimgate.dev/slimgate/pkg/admission"
)

// fleetWorkload is one workload of the fleet test: its object, whether
// its images violate the policy, and where the scan finds its images.
type fleetWorkload struct {
	obj client.Object
	fat bool
	// running: its Pods report the digests they run, which are judged.
	running bool
	// excepted names the SlimImageException that waives its fat image:
	// the Report says skip and names it; admission admits it.
	excepted string
}

// podTemplate is a template of one "app" container (and an "init" one
// when init is set).
func podTemplate(name, image, init string) corev1.PodTemplateSpec {
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	if init != "" {
		t.Spec.InitContainers = []corev1.Container{{Name: "init", Image: init}}
	}
	return t
}

// fleetOf builds the workloads of one namespace.
type fleetOf struct{ ns string }

// make returns a workload of kind (Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job, CronJob or Pod) whose Pods run
// image in an "app" container, after init in an "init" one when init is
// set; replicas for the kinds that have them.
func (f fleetOf) make(kind, name, image, init string, replicas int32) client.Object {
	t := podTemplate(name, image, init)
	meta, sel := metav1.ObjectMeta{Namespace: f.ns, Name: name}, &metav1.LabelSelector{MatchLabels: t.Labels}
	batch := t.DeepCopy()
	batch.Spec.RestartPolicy = corev1.RestartPolicyNever
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: sel, Template: t}}
	case "StatefulSet":
		return &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: sel, Template: t}}
	case "DaemonSet":
		return &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: t}}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: sel, Template: t}}
	case "ReplicationController":
		return &corev1.ReplicationController{ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Replicas: &replicas, Selector: t.Labels, Template: &t}}
	case "Job":
		return &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: *batch}}
	case "CronJob":
		return &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "0 0 1 1 *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: *batch}}}}
	}
	return &corev1.Pod{ObjectMeta: meta, Spec: t.Spec}
}

// A fleet of 22 workloads of every kind across 4 namespaces, fat and
// slim, runs before any policy selects them (kube-controller-manager makes
// their ReplicaSets, Jobs and Pods; the stand-in kubelet reports the
// digests they run). Once an Enforce policy selects the namespaces, the
// background scan reports exactly the workloads admission would now
// refuse: one Report per namespace, one result per workload image, the
// running digest for workloads with Pods, no ReplicaSet or Pod of a
// controller reported on its own; the policy's status.scan and the
// per-namespace metrics say the same. A Pod created while the webhook is
// down (failurePolicy Ignore) is then reported as unreviewed.
func TestBackgroundScanReportsTheFleet(t *testing.T) {
	ctx := t.Context()
	fat, slim, big := e2e.reg.GoSDKApp(), e2e.reg.StaticApp(), e2e.reg.BigStaticApp()
	label := "e2e-fleet-" + rand.String(5)
	var nss []string
	for range 4 {
		nss = append(nss, namespace(t, nil))
	}
	a, b, c, d := fleetOf{nss[0]}, fleetOf{nss[1]}, fleetOf{nss[2]}, fleetOf{nss[3]}
	fleet := []fleetWorkload{
		{obj: a.make("Deployment", "api", fat, "", 2), fat: true, running: true},
		{obj: a.make("Deployment", "web", slim, "", 2), running: true},
		{obj: a.make("StatefulSet", "db", slim, "", 1), running: true},
		{obj: a.make("Job", "migrate", fat, "", 1), fat: true, running: true},
		{obj: a.make("Pod", "debug", fat, "", 1), fat: true, running: true},
		{obj: b.make("DaemonSet", "agent", fat, "", 1), fat: true},
		{obj: b.make("CronJob", "report", slim, "", 1)},
		{obj: b.make("ReplicationController", "legacy", fat, "", 1), fat: true, running: true},
		{obj: b.make("ReplicaSet", "bare-rs", slim, "", 1), running: true},
		{obj: b.make("Pod", "tool", slim, "", 1), running: true},
		{obj: c.make("Deployment", "builder", slim, fat, 1), fat: true, running: true},
		{obj: c.make("CronJob", "nightly", fat, "", 1), fat: true},
		{obj: c.make("StatefulSet", "cache", fat, "", 1), fat: true, running: true},
		{obj: c.make("Job", "seed", slim, "", 1), running: true},
		{obj: c.make("ReplicationController", "old", slim, "", 1), running: true},
		{obj: d.make("Deployment", "big", big, "", 1), fat: true, running: true},
		{obj: d.make("Pod", "bigpod", big, "", 1), fat: true, running: true},
		{obj: d.make("DaemonSet", "logs", slim, "", 1)},
		{obj: d.make("Deployment", "front", slim, "", 1), running: true},
		{obj: d.make("ReplicaSet", "rs-fat", fat, "", 1), fat: true, running: true},
		{obj: d.make("Deployment", "zero", fat, "", 0), fat: true},
		{obj: d.make("Job", "batch", slim, "", 1), running: true},
	}
	// A CI runner in the first namespace runs a Go SDK image of its own,
	// which an exception there waives: as written in the spec, while the
	// scan judges the digest its Pod runs.
	runner := pushImage(t, devcluster.GoSDKApp(), "ci-runner-"+rand.String(5))
	exc := &v1alpha1.SlimImageException{ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: "ci-runner"},
		Spec: v1alpha1.SlimImageExceptionSpec{Policies: []string{label}, Rules: []string{"*"}, Images: []string{runner},
			Reason: "the runner builds code", Expires: metav1.NewTime(time.Now().Add(48 * time.Hour).Truncate(time.Second))}}
	if err := e2e.client.Create(ctx, exc); err != nil {
		t.Fatal(err)
	}
	fleet = append(fleet, fleetWorkload{obj: a.make("Deployment", "runner", runner, "", 1), running: true, excepted: exc.Name})
	for _, w := range fleet {
		if err := e2e.client.Create(ctx, w.obj); err != nil {
			t.Fatalf("creating %T %s: %v", w.obj, w.obj.GetName(), err)
		}
	}
	// Every workload that makes Pods runs them, each reporting its digest.
	webhooktest.Eventually(t, converge, func() error {
		for _, w := range fleet {
			if !w.running {
				continue
			}
			if err := runsDigests(ctx, w.obj); err != nil {
				return err
			}
		}
		return nil
	})

	// Now a policy selects the four namespaces: fat and big are refused.
	p := &v1alpha1.SlimImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: label}, Spec: v1alpha1.SlimImagePolicySpec{
		Mode:              v1alpha1.ModeEnforce,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: "true"}},
		SizeBudget:        v1alpha1.SizeBudget{MaxCompressed: resource.NewQuantity(1<<20, resource.BinarySI)},
		Registries:        v1alpha1.RegistryRules{AllowPrivateNetworks: true, Insecure: []string{e2e.reg.Open, e2e.reg.Private}},
	}}
	for _, ns := range nss {
		var n corev1.Namespace
		if err := e2e.client.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
			t.Fatal(err)
		}
		n.Labels[label] = "true"
		if err := e2e.client.Update(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e2e.client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), p) })
	waitScan(t, p.Name, len(fleet), countFat(fleet))
	checkReports(t, p.Name, nss, fleet)
	checkAdmissionAgrees(t, fleet)
	checkViolationMetrics(t, p.Name, nss, fleet)
	if !t.Failed() {
		t.Logf("%d workloads scanned, %d in violation, across %d namespaces", len(fleet), countFat(fleet), len(nss))
	}

	// The webhook goes down; a fat Pod gets in unreviewed (failurePolicy
	// Ignore), and the scan reports it as such once the webhook is back.
	switch err := e2e.Webhook.Stop(webhooktest.StopWithin); {
	case errors.Is(err, devcluster.ErrNotStopped):
		t.Fatalf("stopping the webhook: %v", err)
	case err != nil:
		// Its server waited beyond the suite's grace period for idle
		// connections of the API server; Run has returned all the same.
		t.Logf("the webhook stopped: %v", err)
	}
	sneaked := b.make("Pod", "sneaked", fat, "", 1)
	err := e2e.client.Create(ctx, sneaked)
	var restartErr error
	e2e.Webhook, restartErr = webhooktest.Run(context.Background(), e2e.WebhookOptions)
	if err != nil || restartErr != nil {
		t.Fatalf("creating a Pod with the webhook down: %v; restarting the webhook: %v", err, restartErr)
	}
	fleet = append(fleet, fleetWorkload{obj: sneaked, fat: true})
	webhooktest.Eventually(t, 2*time.Minute, func() error {
		var rep reportsv1alpha1.Report
		if err := e2e.client.Get(ctx, client.ObjectKey{Namespace: b.ns, Name: controller.ReportName(p.Name)}, &rep); err != nil {
			return err
		}
		for _, r := range rep.Results {
			if r.Subjects[0].Name == sneaked.GetName() && r.Subjects[0].Kind == "Pod" {
				if r.Result != "fail" || r.Properties[controller.PropUnreviewed] != "true" || !strings.Contains(r.Description, "without a review") {
					return fmt.Errorf("the unreviewed Pod's result: %s %v %q", r.Result, r.Properties, r.Description)
				}
				return nil
			}
		}
		return errors.New("no result for the unreviewed Pod yet")
	})
	waitScan(t, p.Name, len(fleet), countFat(fleet))
}

// pushImage pushes a new build of an image (new random layers, so a new
// digest) to repo:1 in the open registry and returns its reference.
func pushImage(t *testing.T, b devcluster.ImageSpec, repo string) string {
	t.Helper()
	img, err := b.Build(512, 0)
	if err != nil {
		t.Fatal(err)
	}
	ref := e2e.reg.Open + "/" + repo + ":1"
	if err := devcluster.Push(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func countFat(fleet []fleetWorkload) int {
	n := 0
	for _, w := range fleet {
		if w.fat {
			n++
		}
	}
	return n
}

// runsDigests reports why a workload does not yet run Pods that report
// the digests of their images, or nil.
func runsDigests(ctx context.Context, o client.Object) error {
	var pods corev1.PodList
	if err := e2e.client.List(ctx, &pods, client.InNamespace(o.GetNamespace())); err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.Name != o.GetName() && !strings.HasPrefix(p.Name, o.GetName()+"-") {
			continue
		}
		if len(p.Status.ContainerStatuses) > 0 && strings.Contains(p.Status.ContainerStatuses[0].ImageID, "@sha256:") {
			return nil
		}
	}
	return fmt.Errorf("%T %s/%s runs no Pod reporting its digest yet", o, o.GetNamespace(), o.GetName())
}

// waitScan waits until the policy's status.scan counts these workloads.
func waitScan(t *testing.T, policyName string, scanned, inViolation int) {
	t.Helper()
	webhooktest.Eventually(t, converge, func() error {
		var p v1alpha1.SlimImagePolicy
		if err := e2e.client.Get(t.Context(), client.ObjectKey{Name: policyName}, &p); err != nil {
			return err
		}
		s := p.Status.Scan
		if s == nil || int(s.WorkloadsScanned) != scanned || int(s.WorkloadsInViolation) != inViolation || s.NamespacesAffected != 4 ||
			len(s.TopNamespaces) != 4 || s.LastScanTime.IsZero() {
			return fmt.Errorf("status.scan %+v, want %d scanned, %d in violation in 4 namespaces", s, scanned, inViolation)
		}
		return nil
	})
}

// checkReports: one Report per namespace, one result per workload image;
// exactly the fat workloads fail; no ReplicaSet, Job or Pod a judged
// controller made is a subject; running workloads are judged at their
// digest, the others at their spec's reference.
func checkReports(t *testing.T, policyName string, nss []string, fleet []fleetWorkload) {
	t.Helper()
	byKey := map[string]fleetWorkload{}
	for _, w := range fleet {
		byKey[w.obj.GetNamespace()+"/"+w.obj.GetName()] = w
	}
	seen := map[string]bool{}
	for _, ns := range nss {
		var rep reportsv1alpha1.Report
		if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: controller.ReportName(policyName)}, &rep); err != nil {
			t.Fatalf("report of %s: %v", ns, err)
		}
		if rep.Source != controller.ReportSource {
			t.Errorf("%s: source %q", ns, rep.Source)
		}
		failed, skipped := map[string]bool{}, map[string]bool{}
		for _, r := range rep.Results {
			if len(r.Subjects) != 1 {
				t.Fatalf("%s: result %+v has %d subjects", ns, r, len(r.Subjects))
			}
			key := ns + "/" + r.Subjects[0].Name
			w, ok := byKey[key]
			if !ok {
				t.Errorf("%s: a result is about %s %s, not a workload of the fleet (a controller's child reported on its own?)", ns, r.Subjects[0].Kind, key)
				continue
			}
			seen[key] = true
			if r.Result == "skip" {
				skipped[key] = true
				if w.excepted == "" || r.Properties[controller.PropExceptions] != w.excepted ||
					r.Properties[controller.PropExpires] == "" || !strings.Contains(r.Description, "SlimImageException "+w.excepted+" until ") {
					t.Errorf("%s: skip %+v, want it naming exception %q and its expiry", key, r, w.excepted)
				}
			}
			if r.Result == "fail" {
				failed[key] = true
				if r.Rule == "" || r.Description == "" {
					t.Errorf("%s: fail without rule or message: %+v", key, r)
				}
			}
			image := r.Properties[controller.PropImage]
			switch from := r.Properties[controller.PropFrom]; {
			case w.running && (from != "running" || !strings.Contains(image, "@sha256:")):
				t.Errorf("%s: judged %q from %q, want the running digest", key, image, from)
			case !w.running && from != "spec":
				t.Errorf("%s: judged %q from %q, want the spec's reference", key, image, from)
			}
		}
		for key, w := range byKey {
			if strings.HasPrefix(key, ns+"/") && w.fat != failed[key] {
				t.Errorf("%s: fail in the report %v, want %v", key, failed[key], w.fat)
			}
			if strings.HasPrefix(key, ns+"/") && (w.excepted != "") != skipped[key] {
				t.Errorf("%s: skip in the report %v, want it where an exception applies (%q)", key, skipped[key], w.excepted)
			}
		}
		// Each fat workload has one fat image.
		if rep.Summary.Fail != len(failed) || rep.Summary.Skip != len(skipped) {
			t.Errorf("%s: summary %+v, %d workloads failed", ns, rep.Summary, len(failed))
		}
	}
	for key := range byKey {
		if !seen[key] {
			t.Errorf("%s: no result in the reports", key)
		}
	}
}

// checkAdmissionAgrees: a Pod of each workload's spec, created now
// (server-side dry run), is refused exactly when the report fails it.
func checkAdmissionAgrees(t *testing.T, fleet []fleetWorkload) {
	t.Helper()
	for _, w := range fleet {
		spec, _, _, _ := admission.PodSpecOf(w.obj)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.obj.GetNamespace(), Name: w.obj.GetName() + "-now"}, Spec: *spec.DeepCopy()}
		pod.Spec.RestartPolicy = ""
		err := e2e.client.Create(t.Context(), pod, client.DryRunAll)
		if refused := apierrors.IsForbidden(err); refused != w.fat || (err != nil && !refused) {
			t.Errorf("%s/%s: a Pod of its spec now: %v; the scan says in violation %v", w.obj.GetNamespace(), w.obj.GetName(), err, w.fat)
		}
	}
}

// checkViolationMetrics: slimgate_workloads_in_violation per namespace
// counts the fat workloads there, and slimgate_bloat_bytes is set where
// a toolchain runs.
func checkViolationMetrics(t *testing.T, policyName string, nss []string, fleet []fleetWorkload) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, f := range families {
		if f.GetName() != "slimgate_workloads_in_violation" && f.GetName() != "slimgate_bloat_bytes" {
			continue
		}
		got[f.GetName()] = map[string]float64{}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["policy"] == policyName {
				got[f.GetName()][labels["namespace"]] = m.GetGauge().GetValue()
			}
		}
	}
	for _, ns := range nss {
		want := 0
		for _, w := range fleet {
			if w.fat && w.obj.GetNamespace() == ns {
				want++
			}
		}
		if v := got["slimgate_workloads_in_violation"][ns]; int(v) != want {
			t.Errorf("slimgate_workloads_in_violation{namespace=%s} = %v, want %d", ns, v, want)
		}
		if v := got["slimgate_bloat_bytes"][ns]; v <= 0 {
			t.Errorf("slimgate_bloat_bytes{namespace=%s} = %v, want the toolchain bytes running there", ns, v)
		}
	}
}
