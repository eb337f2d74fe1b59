package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"slimgate.dev/slimgate/cmd/slimgate/internal/scan"
)

// version is set at build time with -ldflags "-X main.version=...".
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitAllowed = 0
	exitDenied  = 1
	exitError   = 2
)

const usage = `usage:
  slimgate check [flags] IMAGE...   judge images against a policy
  slimgate scan [flags]             judge the workloads running in a cluster
  slimgate version                  print the version

Run "slimgate check -h" or "slimgate scan -h" for their flags.
`

// run is the whole program: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "scan":
		return scan.Run(ctx, args[1:], stdout, stderr)
	case "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "slimgate version: takes no arguments\n")
			return exitError
		}
		fmt.Fprintln(stdout, versionString(version))
		return exitAllowed
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitAllowed
	default:
		fmt.Fprintf(stderr, "slimgate: unknown command %q\n%s", args[0], usage)
		return exitError
	}
}

// versionString is the version set at link time, else the module version
// the binary was built from, else "dev".
func versionString(linked string) string {
	if linked != "" {
		return linked
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
