package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"slimgate.dev/slimgate/pkg/policy"
)

// write prints the reports as JSON or as text for a CI log.
func write(w io.Writer, format string, reports []imageReport) error {
	if format == "json" {
		images := []jsonImage{}
		for _, r := range reports {
			if r.Findings == nil {
				r.Findings = []policy.Finding{}
			}
			images = append(images, jsonImage{Image: r.Image, Digest: r.Digest, imageReport: r})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Images []jsonImage `json:"images"`
		}{images})
	}
	var b strings.Builder
	for _, r := range reports {
		writeText(&b, r)
	}
	b.WriteString(summary(reports))
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonImage is one entry of the JSON output. It repeats Image and Digest
// to print them first, and the digest key even when empty (an image that
// could not be inspected).
type jsonImage struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	imageReport
}

// writeText prints one report, e.g.
//
//	DENY  golang-app:1.0 (linux/amd64, sha256:abcd1234…, 812 MB in 11 layers)
//	  [deny] toolchain.go: Go toolchain: GOLANG_VERSION=1.22.5 (history #3, 612 MB layer)
//	         evidence: history #3: RUN /bin/sh -c go build -o /app .
//	         remedy: build in golang:1.22 AS builder, ...
//	  toolchain layers: 612 MB of 812 MB (75%)
func writeText(b *strings.Builder, r imageReport) {
	if r.Error != "" {
		fmt.Fprintf(b, "ERROR %s\n  %s\n\n", r.Image, r.Error)
		return
	}
	label := "ALLOW"
	if r.Verdict == policy.VerdictDeny {
		label = "DENY "
	}
	var about []string
	if r.Platform != "" {
		about = append(about, r.Platform)
	}
	if r.Digest != "" {
		about = append(about, shortDigest(r.Digest))
	}
	if r.Size.Layers > 0 {
		about = append(about, fmt.Sprintf("%s in %d layers", policy.HumanBytes(r.Size.Compressed), r.Size.Layers))
	}
	fmt.Fprintf(b, "%s %s", label, r.Image)
	if len(about) > 0 {
		fmt.Fprintf(b, " (%s)", strings.Join(about, ", "))
	}
	b.WriteString("\n")
	for _, f := range r.Findings {
		action := string(f.Action)
		if f.Excepted != nil {
			action = "excepted"
		}
		fmt.Fprintf(b, "  [%s] %s: %s\n", action, f.Rule, f.Message)
		if x := f.Excepted; x != nil {
			fmt.Fprintf(b, "         exception: %s/%s until %s: %s\n", x.Namespace, x.Exception, x.Expires.UTC().Format(time.RFC3339), x.Reason)
		}
		main := f.Evidence.Describe(f.Rule)
		if main != "" {
			fmt.Fprintf(b, "         evidence: %s\n", main)
		}
		for _, rel := range f.Related {
			if rel.HistoryIndex != nil && f.Evidence.HistoryIndex != nil && *rel.HistoryIndex == *f.Evidence.HistoryIndex {
				rel.Line = "" // shown above
			}
			if e := rel.Describe(f.Rule); e != "" && e != main {
				fmt.Fprintf(b, "         also: %s\n", e)
			}
		}
		if f.Remedy != "" {
			fmt.Fprintf(b, "         remedy: %s\n", f.Remedy)
		}
	}
	if r.Bloat != nil {
		fmt.Fprintf(b, "  %s\n", r.Bloat)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	b.WriteString("\n")
}

// shortDigest keeps "sha256:" and 12 hex digits.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12] + "…"
}

// summary counts images (not platforms): an image is denied when any of
// its platforms is, and not inspected when any could not be.
func summary(reports []imageReport) string {
	type state struct{ denied, failed bool }
	var order []string
	seen := map[string]*state{}
	for _, r := range reports {
		s, ok := seen[r.Image]
		if !ok {
			s = &state{}
			seen[r.Image] = s
			order = append(order, r.Image)
		}
		s.denied = s.denied || r.Verdict == policy.VerdictDeny
		s.failed = s.failed || r.Error != ""
	}
	var denied, failed int
	for _, img := range order {
		switch {
		case seen[img].failed:
			failed++
		case seen[img].denied:
			denied++
		}
	}
	noun := "images"
	if len(order) == 1 {
		noun = "image"
	}
	s := fmt.Sprintf("%d %s checked: %d denied, %d allowed", len(order), noun, denied, len(order)-denied-failed)
	if failed > 0 {
		s += fmt.Sprintf(", %d not inspected", failed)
	}
	return s + "\n"
}
