package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/exception"
	"slimgate.dev/slimgate/pkg/inspection"
	"slimgate.dev/slimgate/pkg/mirrors"
	"slimgate.dev/slimgate/pkg/policy"
	"slimgate.dev/slimgate/pkg/registry"
	"slimgate.dev/slimgate/pkg/registry/local"
)

// options is everything "slimgate check" is configured with.
type options struct {
	policyFile  string
	output      string
	platform    string
	insecure    hostList
	egressGuard bool
	// mirrorsFile and mirrorsDir name the registry mirrors, as the
	// webhook's flags do.
	mirrorsFile, mirrorsDir string
	timeout                 time.Duration
	images                  []string
	// exceptionsFile holds SlimImageExceptions, honoured as in namespace.
	exceptionsFile string
	namespace      string
}

// hostList is a repeatable string flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(s string) error {
	if s == "" || strings.ContainsAny(s, "/ ") {
		return fmt.Errorf("%q is not a registry host[:port]", s)
	}
	*h = append(*h, s)
	return nil
}

const checkUsage = `usage: slimgate check [flags] IMAGE...

IMAGE is a registry reference (golang:1.22, ghcr.io/org/app@sha256:...),
oci:PATH[:TAG|@DIGEST] (an OCI image layout folder) or
docker-archive:PATH[:TAG] (a docker save tarball). Flags may come before,
between or after images; "--" ends the flags.

Exit status: 0 every image allowed, 1 any denied, 2 usage or inspection
errors (an image that could not be inspected is a denial instead when the
policy sets onInspectionError: Deny).

flags:
`

// parseCheck parses the arguments of "slimgate check". Unlike the flag
// package alone it accepts flags after images.
func parseCheck(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("slimgate check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.policyFile, "policy", "", "SlimImagePolicy YAML or JSON `file` (default: the built-in policy)")
	fs.StringVar(&o.output, "output", "text", "output format: text or json")
	fs.StringVar(&o.platform, "platform", "", "judge only this `os/arch[/variant]` of a multi-platform image (default: every linux platform)")
	fs.Var(&o.insecure, "insecure-registry", "speak plain HTTP to this registry `host[:port]` (repeatable)")
	fs.BoolVar(&o.egressGuard, "egress-guard", false, "apply the policy's registries rules (allow list, private networks) before connecting")
	fs.StringVar(&o.mirrorsFile, "registry-mirrors", "", "YAML `file` of registry mirrors, as the webhook's flag: images are read where the cluster's nodes pull them")
	fs.StringVar(&o.mirrorsDir, "registry-config-path", "", "containerd hosts `folder` (DIR/<host>/hosts.toml) to read the registry mirrors from instead")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "time allowed to inspect each image")
	fs.StringVar(&o.exceptionsFile, "exceptions", "", "SlimImageException YAML `file` (several documents separated by ---) whose waivers apply as in --namespace")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace the images would run in: exceptions of other namespaces do not apply")

	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return o, err
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		// fs.Parse stops at the first image, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			o.images = append(o.images, rest...)
			break
		}
		o.images = append(o.images, rest[0])
		rest = rest[1:]
		args = rest
	}
	switch {
	case len(o.images) == 0:
		return o, errors.New("no image given")
	case o.output != "text" && o.output != "json":
		return o, fmt.Errorf("--output %q: want text or json", o.output)
	case o.platform != "" && !policy.ValidPlatform(o.platform):
		return o, fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/amd64", o.platform)
	case o.timeout <= 0:
		return o, fmt.Errorf("--timeout %s: must be positive", o.timeout)
	case o.namespace == "":
		return o, errors.New("--namespace: must not be empty")
	}
	for _, img := range o.images {
		if strings.TrimSpace(img) == "" || strings.HasPrefix(img, "-") {
			return o, fmt.Errorf("%q is not an image", img)
		}
	}
	return o, nil
}

// imageReport is one judged platform of one image, as printed. The
// embedded Result gives the pinned JSON fields (image, digest, verdict,
// findings, size) and the extra ones (platform, notes, bloat).
type imageReport struct {
	policy.Result
	// Error is why the image could not be inspected.
	Error string `json:"error,omitempty"`
}

// checker judges images under one policy.
type checker struct {
	opts     options
	spec     *v1alpha1.SlimImagePolicySpec
	compiled *policy.Compiled
	mirrors  *mirrors.Table
	remote   registry.Inspector // created on first use
	// policyName names the policy for exceptions; exceptions are those
	// of --exceptions that waive it.
	policyName string
	exceptions []*exception.Exception
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseCheck(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitAllowed
	}
	if err != nil {
		fmt.Fprintf(stderr, "slimgate check: %v\n%s", err, `run "slimgate check -h" for usage`+"\n")
		return exitError
	}
	pol, err := policy.ReadFile(opts.policyFile)
	if err != nil {
		fmt.Fprintf(stderr, "slimgate check: --policy: %v\n", err)
		return exitError
	}
	compiled, err := policy.Compile(&pol.Spec)
	if err != nil {
		fmt.Fprintf(stderr, "slimgate check: --policy: %v\n", err)
		return exitError
	}
	table, err := mirrors.LoadConfig(opts.mirrorsFile, opts.mirrorsDir)
	if err != nil {
		fmt.Fprintf(stderr, "slimgate check: registry mirrors: %v\n", err)
		return exitError
	}
	c := &checker{opts: opts, spec: &pol.Spec, compiled: compiled, mirrors: table, policyName: pol.Name}
	if c.exceptions, err = loadExceptions(opts, pol, time.Now(), stderr); err != nil {
		fmt.Fprintf(stderr, "slimgate check: --exceptions: %v\n", err)
		return exitError
	}

	var reports []imageReport
	code := exitAllowed
	for _, ref := range opts.images {
		rs, err := c.check(ctx, ref)
		if err != nil {
			fmt.Fprintf(stderr, "slimgate check: %v\n", err)
			if rs == nil {
				return exitError
			}
		}
		for _, r := range rs {
			switch {
			case r.Error != "":
				code = exitError
			case r.Verdict == policy.VerdictDeny && code == exitAllowed:
				code = exitDenied
			}
		}
		reports = append(reports, rs...)
	}
	if err := write(stdout, opts.output, reports); err != nil {
		fmt.Fprintf(stderr, "slimgate check: writing the report: %v\n", err)
		return exitError
	}
	return code
}

// check judges one image, one report per platform. An image that could
// not be inspected is judged through policy.InspectionFailed when it is
// itself invalid (or the reference names nothing) or the policy's
// onInspectionError is Deny; otherwise its report carries the error (exit
// 2). A nil slice with an error is a failure that stops the whole run.
func (c *checker) check(ctx context.Context, ref string) ([]imageReport, error) {
	ictx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	insp, err := c.inspect(ictx, ref)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // interrupted: stop here
		}
		f := inspection.Classify(err, errors.Is(ictx.Err(), context.DeadlineExceeded))
		r := imageReport{Result: policy.InspectionFailed(c.spec, ref, f)}
		if len(r.Findings) == 0 { // not judged: onInspectionError Allow
			// The error says the failure; the result's note would repeat it.
			r.Error, r.Notes = f.String(), nil
		}
		return []imageReport{r}, errors.New(ref + ": " + f.String())
	}
	var out []imageReport
	for _, f := range insp.Images {
		res := c.compiled.Evaluate(ctx, f)
		res.Image = ref
		res, _ = exception.Waive(res, c.exceptions, exception.Subject{Policy: c.policyName, Image: ref})
		res.Notes = append(res.Notes, insp.Notes...)
		out = append(out, imageReport{Result: res})
	}
	return out, nil
}

// inspect fetches an image's facts; ctx carries the per-image timeout.
func (c *checker) inspect(ctx context.Context, ref string) (*registry.Inspection, error) {
	var platforms []string
	if c.opts.platform != "" {
		platforms = []string{c.opts.platform}
	} else {
		platforms = c.spec.Platforms
	}
	var (
		insp *registry.Inspection
		err  error
	)
	if local.IsLocal(ref) {
		insp, err = local.Inspect(ref, platforms)
	} else {
		if c.remote == nil {
			// Zero options are the registry package's safe defaults; the
			// per-image timeout reaches it through the context.
			r, err := registry.NewRemote(registry.Options{Timeout: c.opts.timeout, Mirrors: c.mirrors})
			if err != nil {
				return nil, fmt.Errorf("setting up the registry client: %w", err)
			}
			c.remote = r
		}
		insp, err = c.remote.Inspect(ctx, registry.Request{
			Reference:       ref,
			Platforms:       platforms,
			Keychain:        authn.DefaultKeychain,
			CredentialScope: "docker-config",
			Egress: registry.EgressRules{
				Enabled:              c.opts.egressGuard,
				AllowRegistries:      c.spec.Registries.Allow,
				AllowPrivateNetworks: c.spec.Registries.AllowPrivateNetworks,
				Insecure:             c.opts.insecure,
			},
		})
	}
	if err == nil && len(insp.Images) == 0 {
		err = &registry.InspectionError{Reference: ref, Reason: registry.ReasonInvalid, Err: errors.New("no image to judge")}
	}
	return insp, err
}
