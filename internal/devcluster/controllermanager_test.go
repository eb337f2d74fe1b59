package devcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func TestControllerManagerArgs(t *testing.T) {
	cases := []struct {
		name string
		c    ControllerManager
		want []string
	}{
		{"defaults", ControllerManager{}, []string{
			"--kubeconfig=/d/kubeconfig", "--controllers=*,-serviceaccount-token-controller", "--leader-elect=false",
			"--use-service-account-credentials=false", "--bind-address=127.0.0.1", "--secure-port=4711", "--cert-dir=/d/certs",
		}},
		{"service-account identities, unthrottled, extra flags last", ControllerManager{
			Controllers: []string{"replicaset-controller", "deployment-controller"}, ServiceAccountCredentials: true,
			QPS: 500, Burst: 1000, Args: []string{"--v=2"},
		}, []string{
			"--kubeconfig=/d/kubeconfig", "--controllers=replicaset-controller,deployment-controller", "--leader-elect=false",
			"--use-service-account-credentials=true", "--bind-address=127.0.0.1", "--secure-port=4711", "--cert-dir=/d/certs",
			"--kube-api-qps=500", "--kube-api-burst=1000", "--v=2",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.c.args("/d/kubeconfig", "/d/certs", 4711)); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestControllerManagerMissingBinary(t *testing.T) {
	env := &envtest.Environment{BinaryAssetsDirectory: t.TempDir()}
	_, err := ControllerManager{}.Start(context.Background(), env, time.Second)
	if err == nil || !strings.Contains(err.Error(), "hack/envtest-assets.sh") {
		t.Errorf("Start without the binary = %v, want an error naming hack/envtest-assets.sh", err)
	}
}

// startScript starts a shell script with body as the controller manager,
// given kubeconfig.
func startScript(t *testing.T, body string, kubeconfig []byte) *ControllerManagerProcess {
	t.Helper()
	script := filepath.Join(t.TempDir(), "kcm")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &ControllerManagerProcess{dir: t.TempDir(), done: make(chan struct{})}
	if err := p.start(context.Background(), script, ControllerManager{}, kubeconfig); err != nil {
		t.Fatal(err)
	}
	return p
}

// A process that exits at once is reported with its output, and Stop
// removes the temporary folder.
func TestControllerManagerProcessExits(t *testing.T) {
	p := startScript(t, "echo \"starting with $*\"\necho 'no kubeconfig, giving up' >&2\nexit 3", []byte("kubeconfig"))
	err := p.waitHealthy(context.Background(), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("waitHealthy = %v, want the exit status", err)
	}
	logs := p.LogTail(10)
	for _, want := range []string{"--leader-elect=false", "giving up"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log tail %q lacks %q", logs, want)
		}
	}
	kc, err := os.ReadFile(filepath.Join(p.dir, "kubeconfig"))
	if err != nil || string(kc) != "kubeconfig" {
		t.Errorf("kubeconfig file = %q, %v", kc, err)
	}
	if info, err := os.Stat(filepath.Join(p.dir, "kubeconfig")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode = %v, %v; want 0600", info.Mode(), err)
	}
	p.removeDir = true
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("folder still there after Stop: %v", err)
	}
}

// Stop ends a process that ignores nothing: SIGTERM is enough.
func TestControllerManagerStop(t *testing.T) {
	p := startScript(t, "echo up\nexec sleep 60", nil)
	start := time.Now()
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %s, SIGTERM should end sleep at once", took)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

func TestTail(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"a\nb\nc\n", 0, ""},
		{"", 3, ""},
		{"only", 1, "only"},
	}
	for _, tc := range cases {
		if got := tail([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestKubeletMarksPodsReady(t *testing.T) {
	s, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-1"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "side", Image: "side:1"}}}}
	now := metav1.Now()
	deleting := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-2", DeletionTimestamp: &now, Finalizers: []string{"keep"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	elsewhere := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "web-3"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(pending, deleting, elsewhere).WithStatusSubresource(&corev1.Pod{}).Build()
	k := Kubelet{Client: c, Namespace: "team"}
	if err := k.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	ready := func(name, ns string) *corev1.Pod {
		var p corev1.Pod
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	got := ready("web-1", "team")
	if got.Status.Phase != corev1.PodRunning || !podReady(got) || len(got.Status.ContainerStatuses) != 2 ||
		!got.Status.ContainerStatuses[1].Ready || got.Status.ContainerStatuses[1].State.Running == nil {
		t.Errorf("web-1 status = %+v, want running and ready", got.Status)
	}
	if p := ready("web-2", "team"); podReady(p) {
		t.Error("a Pod being deleted was reported ready")
	}
	if p := ready("web-3", "other"); podReady(p) {
		t.Error("a Pod of another namespace was reported ready")
	}
	if MarkReady(got, metav1.Now()) {
		t.Error("MarkReady changed a Ready Pod")
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
