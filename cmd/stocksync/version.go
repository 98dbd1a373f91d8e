package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// build is what this binary was built from, as the Go toolchain recorded it.
type build struct {
	// Version is the main module's version: a tag (v1.2.3), a pseudo-version of the
	// commit (v0.0.0-20261122171741-1a6ad7b1a2b3, +dirty with uncommitted changes), or
	// (devel) when the toolchain knew neither.
	Version string
	// Revision is the commit (vcs.revision), +dirty when the tree had uncommitted
	// changes. Where the toolchain recorded none (outside a git checkout, as the
	// Dockerfile's copy without .git is, in a linked git worktree, or with
	// -buildvcs=false) it is stampedRevision, and "unknown" when that is empty too.
	Revision string
	// GoVersion is the Go release that compiled it.
	GoVersion string
}

// stampedRevision is the commit the build was told of with
// `-ldflags "-X main.stampedRevision=…"` (`make build` and the Dockerfile's REVISION
// argument do), for builds where the toolchain records none.
var stampedRevision string

// thisBuild is the build of the running binary.
func thisBuild() build {
	info, ok := debug.ReadBuildInfo()
	return buildOf(info, ok, stampedRevision)
}

// buildOf reads a build from what debug.ReadBuildInfo returned, with stamped as the
// revision where the toolchain recorded none.
func buildOf(info *debug.BuildInfo, ok bool, stamped string) build {
	b := build{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	if stamped != "" {
		b.Revision = stamped
	}
	if !ok {
		return b
	}
	if info.Main.Version != "" {
		b.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		b.GoVersion = info.GoVersion
	}
	recorded, modified := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			recorded = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if recorded != "" {
		b.Revision = recorded
		if modified {
			b.Revision += "+dirty"
		}
	}
	return b
}

func (b build) String() string {
	return fmt.Sprintf("stocksync %s, revision %s, %s", b.Version, b.Revision, b.GoVersion)
}

// newVersionCmd is `stocksync version`, which prints what `stocksync --version` does.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go release",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), thisBuild())
		},
	}
}

// buildInfoGauge is stocksync_build_info: 1, labelled with the build, so that a
// dashboard can tell which binary each daemon runs.
func buildInfoGauge() prometheus.Gauge {
	b := thisBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "stocksync_build_info",
		Help:        "Always 1; its labels are the build this daemon runs: the module version, the commit (vcs.revision) and the Go release.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}})
	g.Set(1)
	return g
}
