package scan

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"slimgate.dev/slimgate/internal/devcluster"
)

// The tests of the command run it against a real kube-apiserver and etcd
// (envtest) holding the fleet below, whose images live on in-process
// registries; TestMain starts them once. With -short none is started and
// those tests skip.

// fleet is what TestMain set up.
type fixture struct {
	kube client.Client
	regs *devcluster.Registries
	// admin and reader are kubeconfig files: a cluster admin, and a user
	// who may read workloads and namespaces but no secrets.
	admin, reader string
	// policy is a policy file that reaches the registries and selects the
	// namespaces labelled scan=yes; openPolicy selects every namespace.
	policy, openPolicy string
	// fatDigest is the digest of the Go SDK image.
	fatDigest string
}

var fx *fixture

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	env, _, err := devcluster.Env{Root: filepath.Join("..", "..", "..", "..")}.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	regs := devcluster.StartRegistries("team", "s3cret")
	defer regs.Close()
	dir, err := os.MkdirTemp("", "scan-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if fx, err = setUp(context.Background(), env, regs, dir); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the fleet:", err)
		return 1
	}
	return m.Run()
}

// needCluster skips the test in -short mode.
func needCluster(t *testing.T) {
	t.Helper()
	if fx == nil {
		t.Skip("needs kube-apiserver and etcd, which -short mode does not start")
	}
}

// setUp pushes the images and creates the fleet:
//
//	shop (scan=yes):    Deployment api (Go SDK), Deployment web (slim),
//	                    StatefulSet db (slim, 2 MiB layer: over budget)
//	blog (scan=yes):    Pod front (slim spec, but it runs the Go SDK
//	                    image's digest), CronJob nightly (Go SDK)
//	quiet (scan=yes):   Deployment static (slim)
//	private (scan=yes): Deployment team (Go SDK from the private registry,
//	                    pulled with the default service account's secret)
//	broken:             Pod lost (an image on a port nothing serves)
func setUp(ctx context.Context, env *envtest.Environment, regs *devcluster.Registries, dir string) (*fixture, error) {
	if err := regs.PushApps(); err != nil {
		return nil, err
	}
	f := &fixture{regs: regs}
	var err error
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	if f.kube, err = devcluster.NewClient(admin.Config(), nil); err != nil {
		return nil, err
	}
	reader, err := env.AddUser(envtest.User{Name: "reader"}, nil)
	if err != nil {
		return nil, err
	}
	if f.admin, err = writeKubeconfig(dir, "admin", admin); err != nil {
		return nil, err
	}
	if f.reader, err = writeKubeconfig(dir, "reader", reader); err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(regs.GoSDKApp(), name.Insecure)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Head(ref)
	if err != nil {
		return nil, err
	}
	f.fatDigest = desc.Digest.String()
	policyFile := func(file, selector string) (string, error) {
		doc := fmt.Sprintf(`apiVersion: slimgate.dev/v1alpha1
kind: SlimImagePolicy
metadata:
  name: budget
spec:
  mode: Enforce
  namespaceSelector: %s
  sizeBudget:
    maxCompressed: 1Mi
  registries:
    allowPrivateNetworks: true
    insecure: [%q, %q]
`, selector, regs.Open, regs.Private)
		path := filepath.Join(dir, file)
		return path, os.WriteFile(path, []byte(doc), 0o600)
	}
	if f.policy, err = policyFile("policy.yaml", "{matchLabels: {scan: \"yes\"}}"); err != nil {
		return nil, err
	}
	if f.openPolicy, err = policyFile("open.yaml", "{}"); err != nil {
		return nil, err
	}
	return f, f.createFleet(ctx)
}

// createFleet creates the namespaces and workloads setUp describes.
func (f *fixture) createFleet(ctx context.Context) error {
	regs := f.regs
	objs := []client.Object{
		namespace("shop", true), namespace("blog", true), namespace("quiet", true), namespace("private", true), namespace("broken", false),
		namespace("empty", true), // selected, nothing runs there
		deployment("shop", "api", regs.GoSDKApp()),
		deployment("shop", "web", regs.StaticApp()),
		&appsv1.StatefulSet{ObjectMeta: objectMeta("shop", "db"), Spec: appsv1.StatefulSetSpec{
			Selector: selector("db"), Template: template("db", regs.BigStaticApp())}},
		&corev1.Pod{ObjectMeta: objectMeta("blog", "front"), Spec: podSpec(regs.StaticApp())},
		&batchv1.CronJob{ObjectMeta: objectMeta("blog", "nightly"), Spec: batchv1.CronJobSpec{Schedule: "@daily",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: withRestart(template("nightly", regs.GoSDKApp()))}}}},
		deployment("quiet", "static", regs.StaticApp()),
		&corev1.Secret{ObjectMeta: objectMeta("private", "pull"), Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: regs.DockerConfigJSON()}},
		&corev1.ServiceAccount{ObjectMeta: objectMeta("private", "default"), ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}}},
		deployment("private", "team", regs.PrivateGoSDKApp()),
		&corev1.Pod{ObjectMeta: objectMeta("broken", "lost"), Spec: podSpec("127.0.0.1:1/nothing:1")},
		// The reader may read what a scan reads, but no secret and no
		// service account.
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scan-reader"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "replicationcontrollers"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"get", "list"}},
		}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scan-reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "scan-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "reader"}}},
	}
	for _, o := range objs {
		if err := f.kube.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	// blog/front runs the Go SDK image, whatever its spec says.
	var front corev1.Pod
	if err := f.kube.Get(ctx, client.ObjectKey{Namespace: "blog", Name: "front"}, &front); err != nil {
		return err
	}
	front.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: regs.StaticApp(),
		ImageID: strings.TrimSuffix(regs.GoSDKApp(), ":1") + "@" + f.fatDigest}}
	return f.kube.Status().Update(ctx, &front)
}

// writeKubeconfig writes a user's kubeconfig into dir.
func writeKubeconfig(dir, name string, u *envtest.AuthenticatedUser) (string, error) {
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

func namespace(name string, selected bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if selected {
		ns.Labels = map[string]string{"scan": "yes"}
	}
	return ns
}

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func podSpec(image string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}
}

func template(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}}, Spec: podSpec(image)}
}

func withRestart(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	t.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	return t
}

func deployment(namespace, name, image string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: objectMeta(namespace, name),
		Spec: appsv1.DeploymentSpec{Selector: selector(name), Template: template(name, image)}}
}

// runScan runs the command in process.
func runScan(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}
