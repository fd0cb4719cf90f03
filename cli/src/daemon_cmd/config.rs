//! `faramesh serve`'s options: the flags and environment read into the daemon's configuration,
//! and where the policy is found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_server::{self as server, Config, Limits};

use crate::args::{SocketArg, StateDir};

use super::start::private_dir;
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
    /// Take the policy from signed bundles in the fleet database instead of a file (`postgres`,
    /// with `--postgres` and `--policy-key`): the newest bundle for this host's `--labels`,
    /// signed by a pinned key; the last good one is kept in the state dir.
    #[arg(long, value_name = "SOURCE", conflicts_with = "policy", requires_all = ["postgres", "policy_key"])]
    pub policy_from: Option<String>,
    /// The publisher keys this host accepts bundles from: a file of `ssh-ed25519 AAAA…` lines.
    #[arg(long, env = "FARAMESH_POLICY_KEY", value_name = "FILE")]
    pub policy_key: Option<PathBuf>,
    /// This host's labels (`canary,web`): a bundle published for labels reaches only hosts with
    /// one of them.
    #[arg(long, env = "FARAMESH_LABELS", value_name = "LABELS", default_value = "")]
    pub labels: String,
    /// Past the bundle's expiry with no newer bundle: `keep` serving it (said loudly in `status`
    /// and the dashboard) or `deny` every call.
    #[arg(long, value_name = "WHAT", default_value = "keep", value_parser = ["keep", "deny"])]
    pub on_stale: String,
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
    /// The kill file: while it exists, every call is denied (`KILL_SWITCH`), whatever the
    /// policy says.
    #[arg(long, env = "FARAMESH_KILL_FILE", value_name = "FILE", default_value = faramesh_daemon::service::kill::DEFAULT_FILE)]
    pub kill_file: PathBuf,
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

pub(super) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_owned())
    }
}

/// Checks the policy before anything starts: a missing or unreadable file is an error (exit 1)
/// from every command; a file that does not compile is an invalid policy (exit 3) from every command.
pub(super) fn precheck_policy(policy: &Path) -> Result<Option<ExitCode>> {
    std::fs::read_to_string(policy).with_context(|| format!("cannot read policy `{}`", policy.display()))?;
    if let Err(e) = faramesh_daemon::service::state::load_policy(policy) {
        eprintln!("error: {e}");
        return Ok(Some(ExitCode::from(crate::args::EXIT_INVALID_POLICY)));
    }
    Ok(None)
}

/// The longest path a Unix socket can be bound at (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

pub(super) fn check_socket_path(socket: &Path) -> Result<()> {
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

pub(super) fn config_of(args: &ServeArgs, policy: PathBuf) -> Result<Config> {
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
            let policy = faramesh_log::witness::WitnessPolicy::parse(&text)
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
        kill_file: Some(args.kill_file.clone()),
        outbound: faramesh_adapters::outbound(),
        // With a fleet database, signed decisions made elsewhere for this host wait there.
        fleet_queue: args.postgres.as_deref().filter(|u| !u.is_empty()).map(|url| {
            std::sync::Arc::new(faramesh_adapters::export::PostgresQueue::new(url))
                as std::sync::Arc<dyn faramesh_daemon::service::outbound::DecisionQueue>
        }),
        bundle: None,
        fleet_counter: args.postgres.as_deref().filter(|u| !u.is_empty()).map(|url| {
            std::sync::Arc::new(faramesh_adapters::export::PostgresCounter::new(url))
                as std::sync::Arc<dyn faramesh_daemon::service::outbound::FleetCounter>
        }),
    })
}

/// The export destinations the flags and the OpenTelemetry variables configure.
fn export_of(
    otlp_flag: Option<&str>,
    postgres: Option<&str>,
    required: &[String],
) -> Result<Vec<faramesh_daemon::service::outbound::Export>> {
    use faramesh_adapters::export::{Otlp, OtlpExporter, PostgresExporter, export, postgres};
    let mut out = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    if let Some(o) = Otlp::from_env(otlp_flag, &env).map_err(|e| anyhow!(e))? {
        out.push(export("otlp", false, OtlpExporter::new(o)));
    }
    if let Some(url) = postgres.filter(|u| !u.is_empty()) {
        postgres::check_url(url).map_err(|e| anyhow!("`--postgres`: {e}"))?;
        out.push(export("postgres", false, PostgresExporter::new(url)));
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

/// Whether any HTTP token is configured (env or a tokens file).
pub(super) fn tokens_configured(args: &HttpArgs, state_dir: &Path) -> bool {
    let env = |k: &str| std::env::var(k).ok().is_some_and(|v| !v.is_empty());
    env("FARAMESH_TOKEN")
        || env("FARAMESH_APPROVER_TOKEN")
        || args.tokens_file.is_some()
        || state_dir.join("tokens.json").exists()
}

/// The policy of `serve`: `--policy` (or FARAMESH_POLICY), else `./policies/default.yaml`, else
/// the bundled default written once into the config dir; with a note saying which.
pub(super) fn find_policy(given: Option<&Path>, bundled_at: &Path) -> Result<(PathBuf, Option<String>)> {
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
pub(super) fn config_policy_path() -> Result<PathBuf> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --policy FILE"))?,
        )
        .join(".config"),
    };
    Ok(dir.join("faramesh/policy.yaml"))
}

/// Where a host that takes signed bundles keeps the last good one (in its state dir).
pub(super) fn bundle_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("policy-bundle")
}

/// `--policy-from postgres`: the bundle settings (the pinned keys read and checked now).
pub(super) fn bundle_of(
    args: &ServeArgs,
    state_dir: &Path,
) -> Result<faramesh_daemon::service::bundle::BundleConfig> {
    use faramesh_daemon::service::bundle;
    if args.policy_from.as_deref() != Some("postgres") {
        bail!("`--policy-from` takes `postgres` (the fleet database of `--postgres`)");
    }
    let url = args
        .postgres
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("`--policy-from postgres` needs `--postgres URL`"))?;
    let key_file = args.policy_key.as_ref().ok_or_else(|| {
        anyhow!("`--policy-from postgres` needs `--policy-key FILE` (the publisher keys this host trusts)")
    })?;
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read `--policy-key` `{}`", key_file.display()))?;
    let keys = bundle::parse_pinned_keys(&text)
        .map_err(|e| anyhow!("`--policy-key` `{}`: {e}", key_file.display()))?;
    let labels = bundle::parse_labels(&args.labels).map_err(|e| anyhow!("`--labels`: {e}"))?;
    let dir = bundle_dir(state_dir);
    faramesh_log::create_private_dir(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    Ok(bundle::BundleConfig {
        dir,
        keys,
        labels,
        deny_when_stale: args.on_stale == "deny",
        source: std::sync::Arc::new(faramesh_adapters::export::PostgresBundles::new(url)),
    })
}
