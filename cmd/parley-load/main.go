// Command parley-load measures a Matrix homeserver under message load over
// the plain client-server API, so that it can be pointed at any server
// (Parley, Synapse, Dendrite, ...) and the numbers compared.
//
// It registers users, puts them in one public room, has them send
// m.room.message events concurrently, and has a separate watcher user
// long-poll /sync to see how long each event takes to reach another client.
// See docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// maxFailedRatio is the share of failed sends above which the run counts
// as failed: a few errors under overload are data, more means the numbers
// describe a broken server.
const maxFailedRatio = 0.01

func main() {
	os.Exit(mainWithArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainWithArgs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var asJSON bool
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8008", "homeserver client API base `URL`")
	fs.IntVar(&cfg.Senders, "senders", 20, "concurrent senders")
	fs.IntVar(&cfg.Events, "events", 10000, "total events to send (with -duration: an upper bound, if given explicitly)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "send for this long instead of a fixed number of events, e.g. 30s")
	fs.IntVar(&cfg.Users, "users", 0, "sending users; senders take turns over them (default: one per sender)")
	fs.StringVar(&cfg.Prefix, "prefix", "loadtest", "user name prefix; a random run ID is appended so reruns do not collide")
	fs.StringVar(&cfg.Registration, "registration", "dummy", "how users are created (`mode`): dummy (open registration, m.login.dummy) or shared-secret (/_synapse/admin/v1/register)")
	fs.StringVar(&cfg.SharedSecret, "shared-secret", "", "registration shared `secret` for -registration shared-secret; $PARLEY_LOAD_SHARED_SECRET keeps it out of ps")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long the watcher may take after the last send to see the remaining events")
	fs.BoolVar(&asJSON, "json", false, "print the results as a JSON object instead of a table")
	fs.Usage = func() {
		fmt.Fprint(stderr, `parley-load: load a Matrix homeserver with messages and measure it.

Registers -users users and a watcher, creates a public room, then -senders
concurrent senders PUT m.room.message events into it while the watcher
long-polls /sync. Reports send throughput, send latency, send-to-sync
delivery latency, 429s and errors. Exits 1 if setup fails or more than 1%
of sends fail, 2 on bad flags, 130 when interrupted (after printing what it
measured).

Usage: parley-load [flags]

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	eventsSet := false
	fs.Visit(func(f *flag.Flag) { eventsSet = eventsSet || f.Name == "events" })
	if cfg.Duration > 0 && !eventsSet {
		cfg.Events = 0
	}
	if cfg.SharedSecret == "" {
		// Read after parsing so that -h never prints the secret as a default.
		cfg.SharedSecret = os.Getenv("PARLEY_LOAD_SHARED_SECRET")
	}
	if cfg.Users == 0 {
		cfg.Users = cfg.Senders
	}
	if err := validate(cfg); err != nil {
		fmt.Fprintln(stderr, "parley-load:", err)
		return 2
	}
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "parley-load: setup failed:", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		printTable(stdout, res)
	}
	if res.Interrupted {
		return 130 // the shell's code for Ctrl-C: the numbers are incomplete
	}
	if res.FailedRatio() > maxFailedRatio {
		fmt.Fprintf(stderr, "parley-load: %.1f%% of sends failed\n", 100*res.FailedRatio())
		return 1
	}
	return 0
}

// localpartChars are the characters a user ID's localpart may hold.
var localpartChars = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)

func validate(cfg config) error {
	switch {
	case !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://"):
		return fmt.Errorf("-url must start with http:// or https://")
	case cfg.Senders < 1:
		return fmt.Errorf("-senders must be at least 1")
	case cfg.Users < 1:
		return fmt.Errorf("-users must be at least 1")
	case cfg.Events < 0 || cfg.Duration < 0:
		return fmt.Errorf("-events and -duration must not be negative")
	case cfg.Events == 0 && cfg.Duration == 0:
		return fmt.Errorf("give -events or -duration")
	case !localpartChars.MatchString(cfg.Prefix):
		return fmt.Errorf("-prefix may only hold a-z, 0-9 and ._=/+-")
	case cfg.Registration != "dummy" && cfg.Registration != "shared-secret":
		return fmt.Errorf("-registration must be dummy or shared-secret")
	case cfg.Registration == "shared-secret" && cfg.SharedSecret == "":
		return fmt.Errorf("-registration shared-secret needs -shared-secret or $PARLEY_LOAD_SHARED_SECRET")
	}
	return nil
}

func printTable(w io.Writer, r *result) {
	fmt.Fprintf(w, "server   %s  (run %s, room %s)\n", r.URL, r.Run, r.RoomID)
	fmt.Fprintf(w, "setup    %d users + watcher in %.1fs (%d× 429)\n", r.Users, r.SetupSeconds, r.SetupRateLimited)
	fmt.Fprintf(w, "load     %d senders: %d sent, %d failed, %d× 429 in %.2fs = %.1f events/s\n",
		r.Senders, r.Sent, r.Failed, r.RateLimited, r.LoadSeconds, r.EventsPerSec)
	if r.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: the watcher did not drain, so some events count as undelivered")
	}
	fmt.Fprintf(w, "watcher  %d delivered, %d undelivered, %d limited syncs, %d sync errors\n\n",
		r.Delivered, r.Undelivered, r.LimitedSyncs, r.SyncErrors)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Names are padded by hand: AlignRight suits the numbers, not the names.
	fmt.Fprintf(tw, "%-22s\tcount\tmean\tp50\tp90\tp99\tmax\t\n", "latency (ms)")
	for _, row := range []struct {
		name string
		l    latency
	}{
		{"send", r.SendLatency},
		{"send start → sync", r.SyncFromStart},
		{"send response → sync", r.SyncFromResponse},
	} {
		fmt.Fprintf(tw, "%-22s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", row.name, row.l.Count, row.l.Mean, row.l.P50, row.l.P90, row.l.P99, row.l.Max)
	}
	tw.Flush()
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "\nerrors")
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %6d  %s\n", r.Errors[k], k)
		}
	}
}
