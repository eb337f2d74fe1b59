package devcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControllerManagerUser is the user kube-controller-manager authenticates
// as to an envtest API server (in the group system:masters), named as in a
// real cluster: without ServiceAccountCredentials the controllers' requests
// carry this name.
const ControllerManagerUser = "system:kube-controller-manager"

// DefaultControllers is the --controllers value ControllerManager uses by
// default: every controller that is on by default except the legacy
// service-account token controller, which needs a signing key envtest does
// not hand out (and no test needs token Secrets).
func DefaultControllers() []string {
	return []string{"*", "-serviceaccount-token-controller"}
}

// ControllerManager says how to run kube-controller-manager against an
// envtest control plane: the Deployments, ReplicaSets, Jobs and the other
// built-in workloads of a test then create their children, through the
// webhooks the API server calls, as in a real cluster.
type ControllerManager struct {
	// Binary is the kube-controller-manager executable. Empty:
	// kube-controller-manager in the environment's BinaryAssetsDirectory
	// (hack/envtest-assets.sh builds it next to kube-apiserver).
	Binary string
	// Controllers is --controllers; nil: DefaultControllers.
	Controllers []string
	// ServiceAccountCredentials is --use-service-account-credentials:
	// each controller then asks for a token of its own service account in
	// kube-system (replicaset-controller, ...) and its requests carry that
	// identity, system:serviceaccount:kube-system:replicaset-controller.
	// Without it every request carries ControllerManagerUser.
	ServiceAccountCredentials bool
	// QPS and Burst are --kube-api-qps and --kube-api-burst; 0 keeps
	// kube-controller-manager's defaults (20 and 30).
	QPS   float32
	Burst int32
	// Args are further flags, appended last.
	Args []string
	// Dir holds the kubeconfig, the serving certificate and the log.
	// Empty: a new temporary folder, removed by Stop.
	Dir string
	// Output receives the process's output besides the log file; nil:
	// the log file only.
	Output io.Writer
}

// args returns the command line for a kubeconfig, a certificate folder
// and a loopback serving port.
func (c ControllerManager) args(kubeconfig, certDir string, port int) []string {
	controllers := c.Controllers
	if controllers == nil {
		controllers = DefaultControllers()
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=" + strconv.FormatBool(c.ServiceAccountCredentials),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
	}
	if c.QPS > 0 {
		args = append(args, "--kube-api-qps="+strconv.FormatFloat(float64(c.QPS), 'f', -1, 32))
	}
	if c.Burst > 0 {
		args = append(args, "--kube-api-burst="+strconv.Itoa(int(c.Burst)))
	}
	return append(args, c.Args...)
}

// Start writes a kubeconfig for ControllerManagerUser, starts
// kube-controller-manager against env (already started) and waits up to
// within for its /healthz. When Start fails it has stopped what it
// started; else the caller stops the returned process.
func (c ControllerManager) Start(ctx context.Context, env *envtest.Environment, within time.Duration) (*ControllerManagerProcess, error) {
	binary := c.Binary
	if binary == "" {
		binary = filepath.Join(env.BinaryAssetsDirectory, "kube-controller-manager")
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("kube-controller-manager (run hack/envtest-assets.sh): %w", err)
	}
	user, err := env.AddUser(envtest.User{Name: ControllerManagerUser, Groups: []string{"system:masters"}}, &rest.Config{})
	if err != nil {
		return nil, fmt.Errorf("adding the controller manager's user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("writing the controller manager's kubeconfig: %w", err)
	}
	p := &ControllerManagerProcess{dir: c.Dir, done: make(chan struct{})}
	if p.dir == "" {
		if p.dir, err = os.MkdirTemp("", "kube-controller-manager-"); err != nil {
			return nil, err
		}
		p.removeDir = true
	}
	if err := p.start(ctx, binary, c, kubeconfig); err != nil {
		p.cleanup()
		return nil, err
	}
	if err := p.waitHealthy(ctx, within); err != nil {
		_ = p.Stop(10 * time.Second)
		return nil, fmt.Errorf("kube-controller-manager: %w\n%s", err, p.LogTail(40))
	}
	return p, nil
}

// ControllerManagerProcess is a running kube-controller-manager.
type ControllerManagerProcess struct {
	cmd       *exec.Cmd
	dir       string
	removeDir bool
	port      int
	log       *os.File
	done      chan struct{}
	err       error
	stopOnce  sync.Once
}

// start writes the kubeconfig and launches the process, its output going
// to kube-controller-manager.log in the folder.
func (p *ControllerManagerProcess) start(ctx context.Context, binary string, c ControllerManager, kubeconfig []byte) error {
	path := filepath.Join(p.dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	certDir := filepath.Join(p.dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	p.port = port
	if p.log, err = os.Create(filepath.Join(p.dir, "kube-controller-manager.log")); err != nil {
		return err
	}
	out := io.Writer(p.log)
	if c.Output != nil {
		out = io.MultiWriter(p.log, c.Output)
	}
	// The process outlives ctx's request scope on purpose: Stop ends it.
	p.cmd = exec.CommandContext(context.WithoutCancel(ctx), binary, c.args(path, certDir, port)...) //nolint:gosec // G204: the caller names the test binary to run
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	go func() {
		defer close(p.done)
		p.err = p.cmd.Wait()
	}()
	return nil
}

// waitHealthy polls /healthz over HTTPS, trusting the self-signed
// certificate the process writes to its certificate folder.
func (p *ControllerManagerProcess) waitHealthy(ctx context.Context, within time.Duration) error {
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", p.port)
	return Poll(ctx, within, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %w", ErrGiveUp, fmt.Errorf("%w: %w", ErrStopped, p.err))
		default:
		}
		pem, err := os.ReadFile(filepath.Join(p.dir, "certs", "kube-controller-manager.crt"))
		if err != nil {
			return fmt.Errorf("no serving certificate yet: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("serving certificate not readable yet")
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})
}

// Done is closed when the process has exited.
func (p *ControllerManagerProcess) Done() <-chan struct{} { return p.done }

// LogPath is the file the process's output goes to; Stop removes it with
// its temporary folder.
func (p *ControllerManagerProcess) LogPath() string {
	return filepath.Join(p.dir, "kube-controller-manager.log")
}

// LogTail returns the last n lines of the process's output.
func (p *ControllerManagerProcess) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(b, n)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	i := len(b)
	for ; n > 0 && i > 0; n-- {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			i = 0
			break
		}
	}
	return string(bytes.TrimLeft(b[i:], "\n"))
}

// Stop asks the process to exit (SIGTERM), kills it when it has not within
// that time, and removes the temporary folder. It returns ErrNotStopped
// when even the kill did not end it; an exit caused by the signal is not
// an error.
func (p *ControllerManagerProcess) Stop(within time.Duration) error {
	var err error
	p.stopOnce.Do(func() {
		defer p.cleanup()
		if p.cmd == nil || p.cmd.Process == nil {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(within):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			err = fmt.Errorf("kube-controller-manager (pid %d): %w", p.cmd.Process.Pid, ErrNotStopped)
		}
	})
	return err
}

// cleanup closes the log and removes a temporary folder.
func (p *ControllerManagerProcess) cleanup() {
	if p.log != nil {
		_ = p.log.Close()
	}
	if p.removeDir {
		_ = os.RemoveAll(p.dir)
	}
}
