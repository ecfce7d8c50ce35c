// Command parley runs a Parley Matrix homeserver and its administrative
// subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/users"
)

const usage = `usage: parley [command] [flags]

commands:
  run               run the homeserver (the default)
                      --config FILE   (default: $PARLEY_CONFIG, else <data dir>/parley.yaml,
                                       created on first start)
  generate-config   print a complete, commented configuration
                      --server-name NAME [--data-dir DIR]
  register-user     create an account in the configured database
                      --config FILE --user NAME --password P [--admin]
  purge-media       delete cached copies of other servers' media not used recently
                      --config FILE --older-than DURATION (e.g. 720h)
  version           print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runServer(args, stderr)
	case "generate-config":
		err = generateConfig(args, stdout, stderr)
	case "register-user":
		err = registerUser(args, stdout, stderr)
	case "purge-media":
		err = purgeMedia(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "parley", homeserver.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley:", err)
		return 1
	}
	return 0
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configPath finds the config file: the flag, then $PARLEY_CONFIG, then
// parley.yaml in the data directory ($PARLEY_DATA_DIR or ./parley-data).
// With create, a missing default file is written from the sample so that a
// bare `parley` starts a working server.
func configPath(flagValue string, create bool) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := os.Getenv("PARLEY_CONFIG"); p != "" {
		return p, nil
	}
	dataDir := os.Getenv("PARLEY_DATA_DIR")
	if dataDir == "" {
		dataDir = config.Default().DataDir
	}
	path := filepath.Join(dataDir, "parley.yaml")
	if _, err := os.Stat(path); err == nil || !create {
		return path, nil
	}
	serverName := os.Getenv("PARLEY_SERVER_NAME")
	if serverName == "" {
		serverName = config.Default().ServerName
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(config.Sample(serverName, dataDir)), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

func loadConfig(flagValue string, create bool) (*config.Config, error) {
	path, err := configPath(flagValue, create)
	if err != nil {
		return nil, err
	}
	return config.Load(path, os.Environ())
}

func newLogger(cfg *config.Config, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	level, _ := logrus.ParseLevel(cfg.Logging.Level) // validated by config
	log.SetLevel(level)
	json := cfg.Logging.Format == "json"
	if cfg.Logging.Format == "auto" {
		f, ok := out.(*os.File)
		json = !ok || !isatty.IsTerminal(f.Fd())
	}
	if json {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return log
}

func runServer(args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgFlag, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := homeserver.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"server_name": cfg.ServerName, "database": srv.DB.Engine(), "data_dir": cfg.DataDir}).
		Infof("parley %s starting", homeserver.Version)
	return srv.Run(ctx, func(client, _ net.Addr) {
		log.Infof("create the first user with: parley register-user --config %s --user NAME --password PASSWORD --admin", configFileForHint(*cfgFlag, cfg))
		log.Infof("clients connect to http://%s", client)
	})
}

func configFileForHint(flagValue string, cfg *config.Config) string {
	if flagValue != "" {
		return flagValue
	}
	if p := os.Getenv("PARLEY_CONFIG"); p != "" {
		return p
	}
	return filepath.Join(cfg.DataDir, "parley.yaml")
}

func generateConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate-config", stderr)
	name := fs.String("server-name", "", "the server's name (required)")
	dataDir := fs.String("data-dir", config.Default().DataDir, "data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("generate-config: --server-name is required")
	}
	cfg := config.Default()
	cfg.ServerName, cfg.DataDir = *name, *dataDir
	if err := cfg.Finish(); err != nil {
		return err
	}
	fmt.Fprint(stdout, config.Sample(*name, *dataDir))
	return nil
}

func registerUser(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("register-user", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	user := fs.String("user", "", "localpart of the new user (required)")
	password := fs.String("password", "", "password (required)")
	admin := fs.Bool("admin", false, "make the user a server admin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" || *password == "" {
		return errors.New("register-user: --user and --password are required")
	}
	cfg, err := loadConfig(*cfgFlag, false)
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := homeserver.OpenDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	uid, err := users.New(db, cfg.ServerName).Register(ctx, *user, *password, *admin)
	if err != nil {
		return fmt.Errorf("register-user: %w", err)
	}
	fmt.Fprintf(stdout, "registered %s\n", uid)
	return nil
}

func purgeMedia(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("purge-media", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	olderThan := fs.Duration("older-than", 0, "purge remote media not accessed for this long, e.g. 720h (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *olderThan <= 0 {
		return errors.New("purge-media: --older-than is required, e.g. --older-than 720h")
	}
	cfg, err := loadConfig(*cfgFlag, false)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := homeserver.OpenDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	svc, err := homeserver.NewMediaService(cfg, db, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	n, err := svc.PurgeRemoteCache(ctx, time.Now().Add(-*olderThan))
	if err != nil {
		return fmt.Errorf("purge-media: %w (purged %d before the error)", err, n)
	}
	fmt.Fprintf(stdout, "purged %d cached remote media not accessed for %s\n", n, *olderThan)
	return nil
}
