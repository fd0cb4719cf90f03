//! `faramesh serve`, `dev`, `apply`, `status`, `stop`: running the daemon and talking to it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_daemon::log::LogError;
use faramesh_daemon::service::daemon::OpenError;
use faramesh_server::{self as server, Config, Limits};
use serde_json::{Value, json};

use crate::args::{SocketArg, StateDir};
use crate::client;

use crate::setup_cmd::DEFAULT_POLICY;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  faramesh serve --policy policies/default.yaml --socket /run/faramesh/faramesh.sock --state-dir /var/lib/faramesh"
)]
pub struct ServeArgs {
    /// The policy file (hot-reloaded when it changes).
    #[arg(long, env = "FARAMESH_POLICY")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub state: StateDir,
    /// Permission bits of the socket file, in octal.
    #[arg(long, default_value = "660")]
    pub socket_mode: String,
    /// Longest request line, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Close connections idle for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Prune entries older than this age (90d, 12h, 30m, 45s) on a timer: archived to
    /// `--retention-archive` first, or only those `faramesh export` already wrote out.
    #[arg(long, value_name = "AGE")]
    pub retention: Option<String>,
    /// Where retention archives entries before pruning them (JSON lines, one file per prune).
    #[arg(long, value_name = "DIR", requires = "retention")]
    pub retention_archive: Option<PathBuf>,
    /// Ship every log entry as an OTLP log record to this URL (`…/v1/logs`, http/protobuf);
    /// without it, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT (docs/fleet.md).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Also write every log entry into PostgreSQL (`postgres://user:password@host/db`, add
    /// `?sslmode=require` for TLS; the tables are created if missing).
    #[arg(long, env = "FARAMESH_POSTGRES_URL", value_name = "URL", hide_env_values = true)]
    pub postgres: Option<String>,
    /// Export destinations retention must wait for (`otlp`, `postgres`): no prune removes an
    /// entry they have not acknowledged.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub export_required: Vec<String>,
    /// Witnesses to submit the log's checkpoints to: a C2SP tlog-policy file whose
    /// `witness NAME VKEY URL` lines name them (docs/operations.md#witnesses).
    #[arg(long, env = "FARAMESH_WITNESSES", value_name = "FILE")]
    pub witnesses: Option<PathBuf>,
    /// How often the newest checkpoint goes to the witnesses (45s, 10m, 1h).
    #[arg(
        long,
        env = "FARAMESH_WITNESS_INTERVAL",
        value_name = "AGE",
        default_value = "60s",
        requires = "witnesses"
    )]
    pub witness_interval: String,
    /// The decision log's page cache, in MiB (memory the daemon keeps for log pages).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub cache_size: u64,
    #[command(flatten)]
    pub http: HttpArgs,
    /// A demo: a fresh state dir with the demo policy, filled at once with two dozen calls of three
    /// agents (every record marked demo), served like `faramesh serve` alone; the state dir is
    /// removed when the demo stops.
    #[arg(long, env = "FARAMESH_DEMO", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    /// Log at debug level.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The optional HTTP(S) listener. Tokens come from the environment (`FARAMESH_TOKEN` for
/// agents, `FARAMESH_APPROVER_TOKEN` for approvers) or a tokens file, never from the command line.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpArgs {
    /// Also serve HTTP(S) on this address (e.g. 127.0.0.1:8443; plain HTTP only on loopback), or
    /// `off`. `faramesh serve` with nothing configured serves 127.0.0.1:8000 (FARAMESH_HOST,
    /// FARAMESH_PORT).
    #[arg(long, env = "FARAMESH_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// TLS certificate chain (PEM), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// `self-signed`: generate a certificate once into the state dir and reuse it.
    #[arg(long, value_name = "MODE", conflicts_with = "tls_cert")]
    pub tls: Option<String>,
    /// Serve plain HTTP on a non-loopback address too (e.g. 0.0.0.0:8000 in a container whose
    /// port the host publishes on its own loopback, or behind a proxy that terminates TLS).
    /// Tokens are still required.
    #[arg(long, env = "FARAMESH_PLAIN_HTTP", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub plain_http: bool,
    /// Tokens file (JSON; default `<state dir>/tokens.json` when present).
    #[arg(long, env = "FARAMESH_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Largest HTTP request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub http_max_body_bytes: usize,
    /// Seconds to read a request's headers (and the TLS handshake).
    #[arg(long, default_value_t = 10)]
    pub http_header_timeout: u64,
    /// Seconds to read a request's body.
    #[arg(long, default_value_t = 10)]
    pub http_body_timeout: u64,
    /// Most simultaneous HTTP connections.
    #[arg(long, default_value_t = 1024)]
    pub http_max_connections: usize,
}

fn http_config_of(args: &HttpArgs, state_dir: &Path) -> Result<Option<server::http::HttpConfig>> {
    use server::http::{HttpConfig, HttpLimits, Tls};
    let Some(listen) = args.listen.as_deref().filter(|l| !l.is_empty() && *l != "off") else {
        if args.tls.is_some() || args.tls_cert.is_some() {
            bail!("`--tls`/`--tls-cert` need `--listen ADDR`");
        }
        return Ok(None);
    };
    let listen = listen
        .parse()
        .map_err(|_| anyhow!("`--listen` `{listen}` is not an address like 127.0.0.1:8443 or [::1]:8443"))?;
    let tls = match (&args.tls, &args.tls_cert, &args.tls_key) {
        (Some(mode), _, _) if mode == "self-signed" => Tls::SelfSigned,
        (Some(mode), _, _) => {
            bail!("`--tls` `{mode}` must be `self-signed` (or give --tls-cert and --tls-key)")
        }
        (None, Some(cert), Some(key)) => Tls::Files { cert: absolute(cert), key: absolute(key) },
        _ => Tls::None,
    };
    if args.http_max_body_bytes < 1024 {
        bail!("`--http-max-body-bytes` must be at least 1024");
    }
    if args.http_max_connections == 0 {
        bail!("`--http-max-connections` must be at least 1");
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let default_tokens = state_dir.join("tokens.json");
    let tokens_file = args.tokens_file.clone().or_else(|| default_tokens.exists().then_some(default_tokens));
    let plain_beyond_loopback = args.plain_http && tls == Tls::None;
    Ok(Some(HttpConfig {
        listen,
        tls,
        agent_token: env("FARAMESH_TOKEN"),
        approver_token: env("FARAMESH_APPROVER_TOKEN"),
        tokens_file,
        login_secret: None,
        anonymous_agents: false,
        plain_beyond_loopback,
        limits: HttpLimits {
            max_body_bytes: args.http_max_body_bytes,
            header_timeout: Duration::from_secs(args.http_header_timeout.max(1)),
            body_timeout: Duration::from_secs(args.http_body_timeout.max(1)),
            max_connections: args.http_max_connections,
        },
    }))
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::prelude::*;
    let default = if verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FARAMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Under systemd (JOURNAL_STREAM set) log to journald with structured fields; else stderr.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        // Event fields become FARAMESH_<NAME> journal fields (FARAMESH_EFFECT=DENY, …).
        let journald =
            journald.with_field_prefix(Some("FARAMESH".into())).with_syslog_identifier("faramesh".into());
        let _ = tracing_subscriber::registry().with(filter).with(journald).try_init();
        return;
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // No colour escapes in files (daemon.log) or pipes, whatever the flags.
                .with_ansi(
                    std::io::IsTerminal::is_terminal(&std::io::stderr())
                        && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .try_init();
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_owned())
    }
}

/// Checks the policy before anything starts: a missing or unreadable file is an error (exit 1)
/// from every command; a file that does not compile is an invalid policy (exit 3) from every command.
fn precheck_policy(policy: &Path) -> Result<Option<ExitCode>> {
    std::fs::read_to_string(policy).with_context(|| format!("cannot read policy `{}`", policy.display()))?;
    if let Err(e) = faramesh_daemon::service::state::load_policy(policy) {
        eprintln!("error: {e}");
        return Ok(Some(ExitCode::from(crate::args::EXIT_INVALID_POLICY)));
    }
    Ok(None)
}

/// The longest path a Unix socket can be bound at (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

fn check_socket_path(socket: &Path) -> Result<()> {
    let n = socket.as_os_str().len();
    if n > MAX_SOCKET_PATH {
        bail!(
            "socket path `{}` is {n} bytes, over the {MAX_SOCKET_PATH}-byte limit of a Unix socket path; \
             pass a shorter `--socket` (e.g. /tmp/faramesh.sock)",
            socket.display()
        );
    }
    Ok(())
}

fn config_of(args: &ServeArgs, policy: PathBuf) -> Result<Config> {
    let socket_mode = u32::from_str_radix(&args.socket_mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| anyhow!("`--socket-mode` `{}` is not an octal mode like 660", args.socket_mode))?;
    if args.max_line_bytes < 1024 {
        bail!("`--max-line-bytes` must be at least 1024");
    }
    if args.max_connections == 0 {
        bail!("`--max-connections` must be at least 1");
    }
    let limits = Limits {
        max_line_bytes: args.max_line_bytes,
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        log_cache_bytes: usize::try_from(args.cache_size.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    let state_dir = absolute(&args.state.path()?);
    check_socket_path(&absolute(&args.socket.path()))?;
    let http = http_config_of(&args.http, &state_dir)?;
    let retention = match &args.retention {
        None => None,
        Some(age) => Some(faramesh_daemon::service::retention::Retention {
            max_age: faramesh_daemon::service::retention::parse_age(age)
                .ok_or_else(|| anyhow!("`--retention` `{age}` is not an age like 90d, 12h, 30m or 45s"))?,
            archive_dir: args.retention_archive.as_deref().map(absolute),
        }),
    };
    let export = export_of(args.otlp_endpoint.as_deref(), args.postgres.as_deref(), &args.export_required)?;
    let witnesses = match &args.witnesses {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `--witnesses` `{}`", path.display()))?;
            let policy = faramesh_daemon::log::witness::WitnessPolicy::parse(&text)
                .map_err(|e| anyhow!("`--witnesses` `{}`: {e}", path.display()))?;
            if !policy.witnesses.iter().any(|w| w.url.is_some()) {
                bail!("`--witnesses` `{}` names no witness with a URL to submit to", path.display());
            }
            let interval = faramesh_daemon::service::retention::parse_age(&args.witness_interval)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow!(
                        "`--witness-interval` `{}` is not an age like 60s, 10m or 1h",
                        args.witness_interval
                    )
                })?;
            Some(faramesh_daemon::service::witness::Config { policy, interval })
        }
    };
    Ok(Config {
        policy_path: policy,
        socket_path: absolute(&args.socket.path()),
        state_dir,
        socket_mode,
        limits,
        http,
        retention,
        single_user: false,
        demo: false,
        export,
        witnesses,
    })
}

/// The export destinations the flags and the OpenTelemetry variables configure.
fn export_of(
    otlp_flag: Option<&str>,
    postgres: Option<&str>,
    required: &[String],
) -> Result<Vec<faramesh_daemon::service::fleet::Spec>> {
    use faramesh_daemon::service::fleet::{Kind, Otlp, Spec};
    let mut out = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    if let Some(o) = Otlp::from_env(otlp_flag, &env).map_err(|e| anyhow!(e))? {
        out.push(Spec { name: "otlp".into(), kind: Kind::Otlp(o), required: false });
    }
    if let Some(url) = postgres.filter(|u| !u.is_empty()) {
        faramesh_daemon::service::fleet_pg::check_url(url).map_err(|e| anyhow!("`--postgres`: {e}"))?;
        out.push(Spec { name: "postgres".into(), kind: Kind::Postgres(url.to_owned()), required: false });
    }
    for name in required {
        match out.iter_mut().find(|d| &d.name == name) {
            Some(d) => d.required = true,
            None => bail!(
                "`--export-required {name}`: no export destination `{name}` is configured (otlp needs --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT, postgres --postgres)"
            ),
        }
    }
    Ok(out)
}

/// Runs the daemon in this process until SIGTERM or SIGINT (a second signal exits at once).
pub fn run_daemon(config: Config, verbose: bool) -> Result<ExitCode> {
    init_logging(verbose);
    let state_dir = config.state_dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                std::future::pending::<()>().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                eprintln!("faramesh: second signal, exiting now");
                std::process::exit(130);
            });
        };
        // The library says what went wrong; the CLI adds what to do about it.
        server::run(config, shutdown).await.map_err(|e| match &e {
            server::ServerError::SocketInUse(p) => {
                anyhow!("{e}; stop it first (`faramesh stop --socket {}`)", p.display())
            }
            server::ServerError::Open(OpenError::Log(log)) if log.in_use() => {
                anyhow!("{e}; another faramesh daemon holds this state dir (`faramesh status`)")
            }
            server::ServerError::Open(OpenError::Log(LogError::Corrupt { .. } | LogError::Open(_))) => {
                anyhow!(
                    "{e}; `faramesh verify-log --state-dir {}` names the first bad entry",
                    state_dir.display()
                )
            }
            server::ServerError::Open(OpenError::Log(LogError::Format { .. })) => {
                anyhow!("{e}; export it with the version that wrote it (`faramesh export`)")
            }
            _ => anyhow!("{e}"),
        })
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Whether systemd started this process (a service or socket activation): never the quickstart.
fn under_systemd() -> bool {
    ["INVOCATION_ID", "LISTEN_FDS", "NOTIFY_SOCKET"].iter().any(|k| std::env::var_os(k).is_some())
}

/// Whether any HTTP token is configured (env or a tokens file).
fn tokens_configured(args: &HttpArgs, state_dir: &Path) -> bool {
    let env = |k: &str| std::env::var(k).ok().is_some_and(|v| !v.is_empty());
    env("FARAMESH_TOKEN")
        || env("FARAMESH_APPROVER_TOKEN")
        || args.tokens_file.is_some()
        || state_dir.join("tokens.json").exists()
}

/// The policy of `serve`: `--policy` (or FARAMESH_POLICY), else `./policies/default.yaml`, else
/// the bundled default written once into the config dir; with a note saying which.
fn find_policy(given: Option<&Path>, bundled_at: &Path) -> Result<(PathBuf, Option<String>)> {
    if let Some(p) = given {
        return Ok((absolute(p), None));
    }
    let local = Path::new("policies/default.yaml");
    if local.exists() {
        let p = absolute(local);
        let note = format!("policy {} (./policies/default.yaml; `--policy` for another)", p.display());
        return Ok((p, Some(note)));
    }
    if let Some(dir) = bundled_at.parent() {
        private_dir(dir)?;
    }
    if !bundled_at.exists() {
        std::fs::write(bundled_at, DEFAULT_POLICY)
            .with_context(|| format!("cannot write `{}`", bundled_at.display()))?;
    }
    let note =
        format!("policy {} (the bundled default policy; edit it, or pass `--policy`)", bundled_at.display());
    Ok((bundled_at.to_owned(), Some(note)))
}

/// Where `serve` writes the bundled default policy: `$XDG_CONFIG_HOME/faramesh/policy.yaml`, else
/// `~/.config/faramesh/policy.yaml`.
fn config_policy_path() -> Result<PathBuf> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --policy FILE"))?,
        )
        .join(".config"),
    };
    Ok(dir.join("faramesh/policy.yaml"))
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    // Nothing configured (no policy, socket, state dir, listener or token given; not started by
    // systemd): the upstream quickstart, `faramesh serve` alone. It serves the dashboard and API
    // on loopback too, takes tokenless callers there as unauthenticated agents, runs in
    // single-user mode, and prints a sign-in link. Anything configured keeps every default off.
    let state_dir = absolute(&args.state.path()?);
    let quickstart = args.policy.is_none()
        && args.socket.socket.is_none()
        && args.state.state_dir.is_none()
        && args.http.listen.is_none()
        && !tokens_configured(&args.http, &state_dir)
        && !under_systemd();
    if args.demo {
        return serve_demo(&args);
    }
    let (policy, note) = find_policy(args.policy.as_deref(), &config_policy_path()?)?;
    if let Some(code) = precheck_policy(&policy)? {
        return Ok(code);
    }
    let mut config = config_of(&args, policy.clone())?;
    if !quickstart {
        return run_daemon(config, args.verbose);
    }
    if let Some(note) = note {
        eprintln!("faramesh: {note}");
    }
    config.single_user = true;
    let login = quickstart_http(&mut config)?;
    announce("faramesh", config.socket_path.clone(), login, true);
    run_daemon(config, args.verbose)
}

/// Whether `value` of the option `flag` came from the environment variable `var` (inherited
/// from the shell) rather than from the command line.
fn from_env(flag: &str, var: &str, value: &Path) -> bool {
    let with_value = format!("{flag}=");
    let on_command_line = std::env::args_os().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&with_value)
    });
    !on_command_line && std::env::var_os(var).is_some_and(|v| Path::new(&v) == value)
}

/// `serve --demo`: the quickstart in a fresh state dir with the demo policy, and the demo's calls.
/// The state dir is removed when the demo stops.
fn serve_demo(args: &ServeArgs) -> Result<ExitCode> {
    // `eval "$(faramesh apply)"` leaves FARAMESH_SOCKET in the shell. The demo has its own socket,
    // so a variable pointing at no live daemon is not in its way; one pointing at a running daemon
    // is named, because this shell's commands would then talk to that daemon, not the demo.
    let inherited = args
        .socket
        .socket
        .as_deref()
        .filter(|s| from_env("--socket", "FARAMESH_SOCKET", s))
        .map(Path::to_owned);
    if args.policy.is_some()
        || args.state.state_dir.is_some()
        || (args.socket.socket.is_some() && inherited.is_none())
    {
        bail!(
            "a demo runs in a fresh state dir with its own policy and socket: leave out --policy, --socket and \
             --state-dir (and FARAMESH_POLICY, FARAMESH_STATE_DIR)"
        );
    }
    if let Some(socket) = inherited {
        if client::call(&socket, "status", json!({})).is_ok() {
            bail!(
                "FARAMESH_SOCKET in this shell points at a running daemon (`{}`), and this shell's commands would \
                 talk to it rather than to the demo: `unset FARAMESH_SOCKET` first (or `faramesh stop` that daemon)",
                socket.display()
            );
        }
        eprintln!("faramesh demo: ignoring FARAMESH_SOCKET={} (no daemon answers there)", socket.display());
    }
    let dir = crate::demo::fresh_dir()?;
    let served = serve_demo_in(args, &dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => eprintln!("faramesh demo: removed {}", dir.display()),
        Err(e) => eprintln!("faramesh demo: cannot remove `{}`: {e}", dir.display()),
    }
    served
}

/// The demo's daemon in `dir`, until Ctrl-C or SIGTERM.
fn serve_demo_in(args: &ServeArgs, dir: &Path) -> Result<ExitCode> {
    let policy = dir.join("demo.yaml");
    let mut config = config_of(args, policy.clone())?;
    config.state_dir = dir.join("state");
    config.socket_path = dir.join("faramesh.sock");
    config.single_user = true;
    config.demo = true;
    eprintln!(
        "faramesh demo: a fresh state dir {} with the demo policy {} (removed when the demo stops)",
        dir.display(),
        policy.display()
    );
    let login = if args.http.listen.as_deref() == Some("off") { None } else { quickstart_http(&mut config)? };
    announce("faramesh demo", config.socket_path.clone(), login, true);
    crate::demo::play_in_background(config.socket_path.clone());
    run_daemon(config, args.verbose)
}

/// The quickstart's listener: `FARAMESH_HOST:FARAMESH_PORT` (127.0.0.1:8000), tokenless agents.
fn quickstart_http(config: &mut Config) -> Result<Option<String>> {
    let host =
        std::env::var("FARAMESH_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1".into());
    let port = std::env::var("FARAMESH_PORT").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "8000".into());
    let wanted = format!("{host}:{port}");
    let listen: std::net::SocketAddr = wanted.parse().map_err(|_| {
        anyhow!("FARAMESH_HOST/FARAMESH_PORT `{wanted}` is not an address like 127.0.0.1:8000")
    })?;
    loopback_http(config, "faramesh", listen, false, true)
}

/// The listener of `dev`, the quickstart and the demo: plain HTTP on a loopback address, with a
/// one-time sign-in link (returned); tokens from the environment, and with `anonymous` tokenless
/// callers as agents. A default address (not `explicit`) that is taken is skipped with a warning.
fn loopback_http(
    config: &mut Config,
    who: &str,
    listen: std::net::SocketAddr,
    explicit: bool,
    anonymous: bool,
) -> Result<Option<String>> {
    if !listen.ip().is_loopback() {
        bail!(
            "`{who}` serves plain HTTP on loopback only, not `{listen}`; for another address use \
             `faramesh serve --listen ADDR --tls self-signed` with a token"
        );
    }
    if !explicit && std::net::TcpListener::bind(listen).is_err() {
        eprintln!(
            "{who}: {listen} is in use, so the dashboard is off; pass `--listen 127.0.0.1:PORT` (or set FARAMESH_PORT) for another port"
        );
        return Ok(None);
    }
    let secret = faramesh_daemon::log::random_hex(24).context("cannot read /dev/urandom")?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    config.http = Some(server::http::HttpConfig {
        listen,
        tls: server::http::Tls::None,
        agent_token: env("FARAMESH_TOKEN"),
        approver_token: env("FARAMESH_APPROVER_TOKEN"),
        tokens_file: None,
        login_secret: Some(secret.clone()),
        anonymous_agents: anonymous,
        plain_beyond_loopback: false,
        limits: server::http::HttpLimits::default(),
    });
    Ok(Some(secret))
}

/// Prints, once the daemon answers, the line that points agents at it, the dashboard's sign-in
/// link (when there is one) and how approving works here.
fn announce(who: &'static str, socket: PathBuf, login: Option<String>, single_user: bool) {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(status) = client::call(&socket, "status", json!({})) {
                eprintln!("{who}: serving. Connect with:\n  export FARAMESH_SOCKET={}", socket.display());
                if let (Some(url), Some(secret)) = (status["http"]["url"].as_str(), login.as_deref()) {
                    eprintln!(
                        "dashboard (this link signs you in once, as an approver):\n  {url}/#login={secret}\n\
                         without a browser's JavaScript (or for curl -L -c cookies): {url}/login/{secret}\n\
                         a fresh link any time: `faramesh dashboard`"
                    );
                    if status["http"]["anonymous_agents"] == true {
                        eprintln!(
                            "agents may call {url}/v1/actions without a token here (loopback only; set FARAMESH_TOKEN to require one)"
                        );
                    } else if std::env::var("FARAMESH_TOKEN").map_or(true, |t| t.is_empty()) {
                        eprintln!(
                            "agents calling {url}/v1/actions need a token here (a tokenless call gets 401): start with \
                             FARAMESH_TOKEN=<secret> set, and send `Authorization: Bearer <secret>`"
                        );
                    }
                }
                if single_user && status["single_user"] == true {
                    eprintln!(
                        "{}.\n`faramesh approve <id>` works from this user; to keep approvers apart from agents, \
                         list them under `approvals: {{ approvers: [...] }}` in the policy, or run under systemd",
                        faramesh_daemon::service::state::SINGLE_USER_NOTICE
                    );
                } else {
                    eprintln!(
                        "approve deferred calls with `faramesh approve <id>` from another user or as root: an approval \
                         from the uid that made the call is refused unless the policy sets \
                         `approvals: {{ allow_same_uid: true }}`"
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  faramesh dev\n  # in another shell: export FARAMESH_SOCKET=$PWD/.faramesh/faramesh.sock"
)]
pub struct DevArgs {
    /// The policy file (default `policies/default.yaml`, or the bundled default).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Where to keep the socket and state (default `./.faramesh`).
    #[arg(long, default_value = ".faramesh")]
    pub dir: PathBuf,
    /// The dashboard and HTTP API address (plain HTTP, loopback only), or `off`
    /// [default: 127.0.0.1:8000, skipped with a warning when that port is taken].
    #[arg(long)]
    pub listen: Option<String>,
}

/// Creates `dir` (and missing parents) mode 0700; an existing dir is left as it is.
fn private_dir(dir: &Path) -> Result<()> {
    faramesh_daemon::log::create_private_dir(dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))
}

pub fn dev(args: DevArgs) -> Result<ExitCode> {
    let dir = absolute(&args.dir);
    private_dir(&dir)?;
    let (policy, _) = find_policy(args.policy.as_deref(), &dir.join("default.yaml"))?;
    let socket = dir.join("faramesh.sock");
    let serve = ServeArgs {
        policy: Some(policy.clone()),
        socket: SocketArg { socket: Some(socket.clone()) },
        state: StateDir { state_dir: Some(dir.join("state")) },
        socket_mode: "660".into(),
        max_line_bytes: 1 << 20,
        max_connections: 1024,
        idle_timeout: 300,
        cache_size: 16,
        retention: None,
        retention_archive: None,
        otlp_endpoint: None,
        postgres: None,
        export_required: Vec::new(),
        witnesses: None,
        witness_interval: "60s".into(),
        http: HttpArgs::default(),
        demo: false,
        verbose: true,
    };
    if let Some(code) = precheck_policy(&policy)? {
        return Ok(code);
    }
    let mut config = config_of(&serve, policy.clone())?;
    // Single-user unless a token says otherwise (the person at the terminal runs it all).
    config.single_user = !tokens_configured(&HttpArgs::default(), &config.state_dir);
    let wanted = args.listen.clone().unwrap_or_else(|| "127.0.0.1:8000".into());
    let login = if wanted == "off" {
        None
    } else {
        let listen: std::net::SocketAddr = wanted
            .parse()
            .map_err(|_| anyhow!("`--listen` `{wanted}` is not an address like 127.0.0.1:8000 (or `off`)"))?;
        loopback_http(&mut config, "faramesh dev", listen, args.listen.is_some(), false)?
    };
    run_dev(config, policy, dir, socket, login)
}

/// The rest of `faramesh dev`: refuse a second one, print the connect lines once serving, run.
fn run_dev(
    config: Config,
    policy: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    login: Option<String>,
) -> Result<ExitCode> {
    if let Ok(s) = client::call(&socket, "status", json!({})) {
        bail!(
            "already running (pid {}) on `{}`; stop it with `faramesh stop --socket {}`",
            s["pid"],
            socket.display(),
            socket.display()
        );
    }
    eprintln!("faramesh dev: starting with {} (state in {})", policy.display(), dir.join("state").display());
    // The connect line only once the daemon answers, so it is never a promise that fails.
    let single_user = config.single_user;
    announce("faramesh dev", socket, login, single_user);
    run_daemon(config, true)
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  eval \"$(faramesh apply --policy policies/default.yaml)\"")]
pub struct ApplyArgs {
    /// The policy file.
    #[arg(long, env = "FARAMESH_POLICY", default_value = "policies/default.yaml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub state: StateDir,
}

pub fn apply(args: ApplyArgs, json_out: bool) -> Result<ExitCode> {
    let policy = absolute(&args.policy);
    if let Some(code) = precheck_policy(&policy)? {
        return Ok(code);
    }
    // An installed, enabled unit serving this policy is driven through systemd.
    if let Some(unit) = installed_unit().filter(|u| u.policy == policy) {
        let running = client::call(&unit.socket, "status", json!({})).is_ok();
        let outcome = apply_with_unit(&unit, running)?;
        if json_out {
            println!("{outcome}");
        } else {
            eprintln!("faramesh: {} ({})", outcome["action"].as_str().unwrap_or(""), policy.display());
            println!("export FARAMESH_SOCKET={}", unit.socket.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let socket = absolute(&args.socket.path());
    check_socket_path(&socket)?;
    let running = client::call(&socket, "policy.status", json!({}));
    let outcome = match running {
        Ok(status) => {
            let served = status.get("path").and_then(Value::as_str).unwrap_or_default().to_owned();
            if served != policy.display().to_string() {
                bail!(
                    "the daemon on `{}` serves `{served}`, not `{}`: edit that file, or stop the daemon first",
                    socket.display(),
                    policy.display()
                );
            }
            let r = client::call(&socket, "policy.reload", json!({}))?;
            if r.get("ok").and_then(Value::as_bool) != Some(true) {
                bail!("reload failed: {}", r.get("error").and_then(Value::as_str).unwrap_or("unknown error"));
            }
            json!({"action": "reloaded", "policy_hash": r.get("policy_hash"), "socket": socket.display().to_string()})
        }
        Err(_) => {
            let state_dir = absolute(&args.state.path()?);
            private_dir(&state_dir)?;
            let log_path = state_dir.join("daemon.log");
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log_path)
                .with_context(|| format!("cannot open `{}`", log_path.display()))?;
            let exe = std::env::current_exe().context("cannot find the faramesh binary")?;
            let mut child = std::process::Command::new(exe)
                .arg("serve")
                .arg("--policy")
                .arg(&policy)
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(&state_dir)
                .stdin(std::process::Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .context("cannot start the daemon")?;
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                if client::call(&socket, "status", json!({})).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("the daemon exited ({status}); see `{}`", log_path.display());
                }
                if std::time::Instant::now() > deadline {
                    bail!("the daemon did not answer within 15 s; see `{}`", log_path.display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            json!({"action": "started", "pid": child.id(), "socket": socket.display().to_string(), "log": log_path.display().to_string()})
        }
    };
    if json_out {
        println!("{outcome}");
    } else {
        eprintln!("faramesh: {} ({})", outcome["action"].as_str().unwrap_or(""), policy.display());
        println!("export FARAMESH_SOCKET={}", socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(socket: &SocketArg, json_out: bool) -> Result<ExitCode> {
    let s = client::call(&socket.path(), "status", json!({}))?;
    if json_out {
        println!("{s}");
        return Ok(ExitCode::SUCCESS);
    }
    let p = &s["policy"];
    println!(
        "faramesh {} (pid {}, up {}s)",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        s["uptime_seconds"]
    );
    println!("socket    {}", s["socket"].as_str().unwrap_or("?"));
    if let Some(url) = s["http"]["url"].as_str() {
        match s["http"]["tls_fingerprint"].as_str() {
            Some(fp) => println!("http      {url} (certificate SHA-256 {fp})"),
            None if s["http"]["loopback"] == false => {
                println!("http      {url} (plain HTTP beyond loopback, --plain-http)")
            }
            None => println!("http      {url} (plain HTTP, loopback only)"),
        }
        if s["http"]["anonymous_agents"] == true {
            println!("          tokenless callers are served as agents (loopback, no token configured)");
        }
    }
    if let Some(notice) = s["notice"].as_str() {
        println!("mode      {notice}");
    }
    if s["demo"] == true {
        println!("demo      a demo daemon: its state dir is fresh and every call in it is a demo call");
    }
    println!(
        "policy    {} ({} rules, {})",
        p["path"].as_str().unwrap_or("?"),
        p["rules"],
        p["policy_hash"].as_str().unwrap_or("?")
    );
    if let Some(e) = p["last_error"].as_str() {
        println!("reload    FAILED: {} (the previous policy is still serving)", crate::term::safe(e));
    }
    let c = &s["counts"];
    println!(
        "decisions {} permit, {} deny, {} defer; errors: {} from clients, {} internal",
        c["permit"], c["deny"], c["defer"], c["client_errors"], c["internal_errors"]
    );
    let n = &s["notifications"];
    if n["channels"].as_array().is_some_and(|c| !c.is_empty()) {
        let channels: Vec<&str> =
            n["channels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        // The last error may quote what a webhook's server answered.
        let line = format!(
            "notify    {}: {} delivered, {} failed, {} waiting{}",
            channels.join(", "),
            n["delivered"],
            n["failed"],
            n["waiting"],
            n["last_error"].as_str().map(|e| format!(" (last error: {e})")).unwrap_or_default()
        );
        println!("{}", crate::term::safe(&line));
    }
    for d in s["export"].as_array().into_iter().flatten() {
        let line = format!(
            "export    {} {}{}: through entry {} of {}, {} behind ({} s){}",
            d["name"].as_str().unwrap_or("?"),
            d["target"].as_str().unwrap_or("?"),
            if d["required"] == true { " (required: retention waits for it)" } else { "" },
            d["cursor"],
            d["head"],
            d["lag_entries"],
            d["lag_seconds"],
            d["last_error"].as_str().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
        println!("{}", crate::term::safe(&line));
    }
    for w in s["witnesses"].as_array().into_iter().flatten() {
        let state = match (&w["alarm"], w["size"].as_u64().unwrap_or(0)) {
            (a, _) if !a.is_null() => {
                format!("ALARM ({}): {}", a["status"], a["message"].as_str().unwrap_or(""))
            }
            (_, 0) => "no checkpoint cosigned yet".to_owned(),
            (_, size) => format!("cosigned through entry {size} ({})", w["last_ok"].as_str().unwrap_or("?")),
        };
        println!(
            "witness   {} {}: {state}{}",
            w["name"].as_str().unwrap_or("?"),
            w["url"].as_str().unwrap_or("?"),
            w["last_error"].as_str().map(|e| format!("; last error: {e}")).unwrap_or_default()
        );
    }
    let pruned = match s["log"]["first_seq"].as_u64() {
        Some(first) if first > 1 => format!(" (entries before {first} pruned)"),
        _ => String::new(),
    };
    println!(
        "log       {} entries{pruned}, head {}",
        s["log"]["size"],
        s["log"]["head_hash"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn stop(socket: &SocketArg) -> Result<ExitCode> {
    let path = socket.path();
    let s = client::call(&path, "status", json!({}))?;
    let pid = s["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| anyhow!("the daemon did not say its pid"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| anyhow!("cannot signal pid {pid}: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if path.exists() {
        bail!("pid {pid} did not stop within 15 s");
    }
    eprintln!("faramesh: stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

/// Where the installed systemd units run the daemon (scripts/install.sh).
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// `systemctl --user` units rather than system ones.
    pub user: bool,
    /// The policy the unit serves.
    pub policy: PathBuf,
    /// The socket the unit's daemon answers on.
    pub socket: PathBuf,
}

impl Unit {
    fn systemctl(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let mut cmd = std::process::Command::new("systemctl");
        if self.user {
            cmd.arg("--user");
        }
        cmd.args(args).stdin(std::process::Stdio::null()).output()
    }

    /// `system` or `user`, for messages.
    pub fn scope(&self) -> &'static str {
        if self.user { "user" } else { "system" }
    }
}

/// The installed and enabled faramesh unit (system first, then the user's), if any.
pub(crate) fn installed_unit() -> Option<Unit> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = [
        Unit {
            user: false,
            policy: "/etc/faramesh/policy.yaml".into(),
            socket: "/run/faramesh/faramesh.sock".into(),
        },
        Unit {
            user: true,
            policy: home.join(".faramesh/policy.yaml"),
            socket: home.join(".faramesh/runtime/faramesh.sock"),
        },
    ];
    candidates.into_iter().find(|u| {
        ["faramesh.socket", "faramesh.service"]
            .iter()
            .any(|name| u.systemctl(&["is-enabled", "--quiet", name]).is_ok_and(|o| o.status.success()))
    })
}

/// `faramesh apply` through systemd: reload the running unit, or start it.
fn apply_with_unit(unit: &Unit, running: bool) -> Result<Value> {
    let action = if running { "reload" } else { "start" };
    let units: &[&str] =
        if running { &["faramesh.service"] } else { &["faramesh.socket", "faramesh.service"] };
    let mut args = vec![action];
    args.extend_from_slice(units);
    let out = unit.systemctl(&args).context("cannot run systemctl")?;
    if !out.status.success() {
        bail!(
            "`systemctl{} {}` failed: {}",
            if unit.user { " --user" } else { "" },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client::call(&unit.socket, "status", json!({})).is_err() {
        if std::time::Instant::now() > deadline {
            bail!(
                "the {} unit did not answer on `{}` within 15 s (`journalctl -u faramesh`)",
                unit.scope(),
                unit.socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let verb = if running { "reloaded" } else { "started" };
    Ok(
        json!({"action": format!("{verb} (systemd {} unit)", unit.scope()), "socket": unit.socket.display().to_string()}),
    )
}

/// `faramesh dashboard`: a fresh one-time sign-in link to the daemon's dashboard (and a browser
/// opened on it when there is one).
pub fn dashboard(socket: &SocketArg, json_out: bool) -> Result<ExitCode> {
    let r = client::call(&socket.path(), "dashboard.login", json!({}))?;
    let Some(url) = r["url"].as_str() else {
        bail!(
            "the daemon serves no dashboard: start it with `--listen 127.0.0.1:8000` (or `faramesh serve` alone)"
        );
    };
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{url}");
    eprintln!("this link signs you in once, as an approver, within 10 minutes");
    let graphical = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical {
        let opener =
            std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "xdg-open".into());
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(ExitCode::SUCCESS)
}
