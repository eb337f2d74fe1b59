package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"slimgate.dev/slimgate/cmd/webhook/app"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(execute(ctrl.SetupSignalHandler(), os.Args[1:], os.Stderr, app.Run))
}

// execute parses args into app.Options, sets up logging and hands over to
// run (app.Run; tests pass a function that records the options). It
// returns the exit status: 0 after a clean stop, 2 on bad flags, 1 when
// run fails.
func execute(ctx context.Context, args []string, stderr io.Writer, run func(context.Context, app.Options) error) int {
	var opts app.Options
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts.AddFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "webhook: unexpected arguments %q\n", fs.Args())
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(stderr)))
	ctrl.Log.Info("starting slimgate webhook", "version", version, "certRotation", opts.CertRotation, "clientCA", opts.ClientCAName)
	if err := run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "webhook: %v\n", err)
		return 1
	}
	return 0
}
