package main

import (
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionSaysWhatGoRecordedOfTheBuild: `stocksync --version` and `stocksync version`
// print the same line, with the module version, commit and Go release that `go version
// -m` reads from the binary, and a running daemon's /metrics has stocksync_build_info
// with the same three labels.
func TestVersionSaysWhatGoRecordedOfTheBuild(t *testing.T) {
	recorded, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	want := build{Revision: "unknown"}
	dirty := false
	for _, line := range strings.Split(string(recorded), "\n") {
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, binary+": "):
			want.GoVersion = strings.TrimPrefix(line, binary+": ")
		case len(fields) >= 3 && fields[0] == "mod" && fields[1] == "github.com/stocksync/stocksync":
			want.Version = fields[2]
		case len(fields) == 2 && fields[0] == "build" && strings.HasPrefix(fields[1], "vcs.revision="):
			want.Revision = strings.TrimPrefix(fields[1], "vcs.revision=")
		case len(fields) == 2 && fields[0] == "build" && fields[1] == "vcs.modified=true":
			dirty = true
		}
	}
	if dirty {
		want.Revision += "+dirty"
	}
	if want.GoVersion == "" || want.Version == "" {
		t.Fatalf("go version -m names no Go release or module version:\n%s", recorded)
	}
	wantLine := "stocksync " + want.Version + ", revision " + want.Revision + ", " + want.GoVersion + "\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || string(out) != wantLine {
			t.Errorf("stocksync %s: %v, %q; want %q", args[0], err, out, wantLine)
		}
	}

	s := newSetup(t, startDevBroker(t))
	s.start(t)
	_, metrics := httpGet(s.httpAddr, "/metrics")
	wantMetric := `stocksync_build_info{goversion="` + want.GoVersion + `",revision="` + want.Revision + `",version="` + want.Version + `"} 1`
	if !strings.Contains(metrics, wantMetric+"\n") {
		t.Errorf("/metrics lacks %s", wantMetric)
	}
}

// TestBuildNamesTheCommit reads the build info of a binary built from a git checkout with
// uncommitted changes, and of one without build info.
func TestBuildNamesTheCommit(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/stocksync/stocksync",
		Version: "v0.0.0-20261122171741-1a6ad7b1a2b3+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "1a6ad7b1a2b3c4d5e6f708192a3b4c5d6e7f8091"}, {Key: "vcs.modified", Value: "true"}}}
	want := "stocksync v0.0.0-20261122171741-1a6ad7b1a2b3+dirty, revision 1a6ad7b1a2b3c4d5e6f708192a3b4c5d6e7f8091+dirty, go1.26.8"
	if got := buildOf(info, true, "ffff").String(); got != want {
		t.Errorf("built from a checkout with changes: %q, want %q", got, want)
	}
	if got := buildOf(nil, false, ""); got.Version != "unknown" || got.Revision != "unknown" || !strings.HasPrefix(got.GoVersion, "go") {
		t.Errorf("without build info: %+v, want version and revision unknown and this Go release", got)
	}
	info.Settings = []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}
	if got := buildOf(info, true, "1a6ad7b+dirty").Revision; got != "1a6ad7b+dirty" {
		t.Errorf("built with -buildvcs=false and a stamped revision: revision %q, want the stamped 1a6ad7b+dirty", got)
	}
	if got := buildOf(nil, false, "1a6ad7b").Revision; got != "1a6ad7b" {
		t.Errorf("without build info and a stamped revision: revision %q, want the stamped 1a6ad7b", got)
	}
}
