//! Starting the daemon: `faramesh serve` and `dev` in the foreground (logging, the demo and
//! quickstart modes, what is announced on start).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_daemon::service::daemon::OpenError;
use faramesh_log::LogError;
use faramesh_server::{self as server, Config};
use serde_json::json;

use crate::args::{SocketArg, StateDir};
use crate::client;

use super::config::{
    HttpArgs, ServeArgs, absolute, config_of, config_policy_path, find_policy, precheck_policy,
    tokens_configured,
};

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
    if args.policy_from.is_some() {
        // Signed bundles from the fleet database: the last good one is read (and checked) from
        // the state dir; none yet means every call is denied until one arrives.
        let bundle = super::config::bundle_of(&args, &state_dir)?;
        let mut config = config_of(&args, bundle.dir.join(faramesh_daemon::service::bundle::BUNDLE_FILE))?;
        config.bundle = Some(bundle);
        return run_daemon(config, args.verbose);
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
    let secret = faramesh_log::random_hex(24).context("cannot read /dev/urandom")?;
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
pub(super) fn private_dir(dir: &Path) -> Result<()> {
    faramesh_log::create_private_dir(dir).with_context(|| format!("cannot create `{}`", dir.display()))
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
        policy_from: None,
        policy_key: None,
        labels: String::new(),
        on_stale: "keep".into(),
        export_required: Vec::new(),
        witnesses: None,
        witness_interval: "60s".into(),
        kill_file: faramesh_daemon::service::kill::DEFAULT_FILE.into(),
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
