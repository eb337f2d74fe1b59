package main

import (
	"context"
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"slimgate.dev/slimgate/cmd/webhook/app"
)

func main() {
	var opts app.Options
	fs := flag.NewFlagSet("webhook", flag.ExitOnError)
	opts.AddFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	_ = fs.Parse(os.Args[1:]) // ExitOnError exits on bad flags
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "webhook stopped")
		os.Exit(1)
	}
}

// run is the whole program after flag parsing.
func run(ctx context.Context, opts app.Options) error { return app.Run(ctx, opts) }
