package admission

import (
	"io"
	"os"
	"testing"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	logzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// binaryLogger logs like the webhook binary (zap JSON at info level), to a
// sink that discards: what a log line costs is part of the decision, in
// the tests and in the benchmarks.
func binaryLogger() logr.Logger {
	return logzap.New(logzap.WriteTo(io.Discard), logzap.UseDevMode(false))
}

// TestMain gives the package's tests and benchmarks the binary's logger
// (zap JSON at info level), writing to a sink that discards.
func TestMain(m *testing.M) {
	logf.SetLogger(binaryLogger())
	os.Exit(m.Run())
}
