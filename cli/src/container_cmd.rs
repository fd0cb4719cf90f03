//! Containers: `init-docker` (a Dockerfile, compose.yaml, tokens and the image's files next to a
//! policy) and `health` (the image's healthcheck: `GET /health` on the HTTP listener).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

/// The repository's Dockerfile: its runtime stage is what `init-docker` writes.
const DOCKERFILE: &str = include_str!("../../Dockerfile");
/// The repository's compose.yaml, which `init-docker` writes with the policy's folder.
const COMPOSE: &str = include_str!("../../compose.yaml");
/// The uid and gid the image runs as.
const IMAGE_UID: &str = "10001";
/// The folder beside the Dockerfile that holds the image's files.
const IMAGE_DIR: &str = "faramesh-image";

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh init-docker && docker compose up -d")]
pub struct InitDockerArgs {
    /// Where to write Dockerfile, compose.yaml, .env and faramesh-image/ (default: here).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The policy the container serves (default `policies/default.yaml` in DIR, written from the
    /// bundled default when missing). compose.yaml mounts its folder read-only.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Overwrite an existing Dockerfile, compose.yaml and faramesh-image/ (.env is always kept).
    #[arg(long)]
    force: bool,
    /// Only lay out the image's files in this folder (`root/`, `data/`), as the Dockerfile's
    /// build stage does.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with_all = ["policy", "force"])]
    image_tree: Option<PathBuf>,
}

pub fn init_docker(args: InitDockerArgs) -> Result<ExitCode> {
    if let Some(tree) = &args.image_tree {
        let libs = image_tree(tree)?;
        println!("wrote {} (faramesh and {libs} shared libraries)", tree.display());
        return Ok(ExitCode::SUCCESS);
    }
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let dockerfile = dir.join("Dockerfile");
    let compose = dir.join("compose.yaml");
    let image = dir.join(IMAGE_DIR);
    if !args.force {
        let existing: Vec<String> = [&dockerfile, &compose, &image]
            .iter()
            .filter(|p| p.exists())
            .map(|p| format!("`{}`", p.display()))
            .collect();
        if !existing.is_empty() {
            bail!("{} already exist: pass --force to overwrite (.env is always kept)", existing.join(", "));
        }
    }
    let dockerfile_text = runtime_dockerfile()?;
    let policy = match &args.policy {
        Some(p) => {
            if !p.is_file() {
                bail!("the policy `{}` is not a file", p.display());
            }
            p.clone()
        }
        None => {
            let p = dir.join("policies/default.yaml");
            if !p.exists() {
                std::fs::create_dir_all(dir.join("policies"))?;
                std::fs::write(&p, crate::setup_cmd::DEFAULT_POLICY)
                    .with_context(|| format!("cannot write `{}`", p.display()))?;
                println!("wrote {} (the bundled default policy)", p.display());
            }
            p
        }
    };
    let (mount, file) = policy_mount(dir, &policy)?;
    std::fs::write(&dockerfile, dockerfile_text)
        .with_context(|| format!("cannot write `{}`", dockerfile.display()))?;
    std::fs::write(&compose, compose_for(&mount, &file)?)
        .with_context(|| format!("cannot write `{}`", compose.display()))?;
    if image.exists() {
        std::fs::remove_dir_all(&image).with_context(|| format!("cannot replace `{}`", image.display()))?;
    }
    let libs = image_tree(&image)?;
    let env = dir.join(".env");
    let env_note = if env.exists() {
        "kept"
    } else {
        write_env(&env)?;
        "fresh random tokens, mode 0600"
    };
    println!("wrote {}", dockerfile.display());
    println!("wrote {} (serves {mount}/{file})", compose.display());
    println!("wrote {}/ (this faramesh and the {libs} shared libraries it links)", image.display());
    println!("{}: {env_note}", env.display());
    println!(
        "\nnext:\n  docker compose up -d        (or: podman compose up -d)\n  \
         open http://127.0.0.1:8000 and sign in with FARAMESH_APPROVER_TOKEN from .env\n  \
         agents: Authorization: Bearer $FARAMESH_TOKEN (docs/containers.md)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The Dockerfile's runtime stage, taking the image's files from `faramesh-image/` instead of
/// the build stage.
fn runtime_dockerfile() -> Result<String> {
    let start = DOCKERFILE
        .find("FROM scratch")
        .ok_or_else(|| anyhow!("the bundled Dockerfile has no runtime stage"))?;
    let stage = &DOCKERFILE[start..];
    if stage.matches("--from=build ").count() != 2 || stage.matches(" /image/").count() != 2 {
        bail!("the bundled Dockerfile's runtime stage does not copy root/ and data/ from the build stage");
    }
    let stage = stage.replace("--from=build ", "").replace(" /image/", &format!(" {IMAGE_DIR}/"));
    Ok(format!(
        "# Written by `faramesh init-docker`: this faramesh, the shared libraries it links and its\n\
         # default policy (all in {IMAGE_DIR}/), in an image built FROM scratch (docs/containers.md).\n\
         #   docker compose up -d     (compose.yaml)\n\n{}",
        stage
    ))
}

/// Where compose.yaml mounts the policy's folder from (relative to DIR when inside it), and the
/// policy's file name.
fn policy_mount(dir: &Path, policy: &Path) -> Result<(String, String)> {
    let file = policy
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| anyhow!("the policy `{}` has no file name", policy.display()))?
        .to_owned();
    let folder = std::fs::canonicalize(policy)
        .with_context(|| format!("cannot read `{}`", policy.display()))?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the policy `{}` has no folder", policy.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
    let mount = match folder.strip_prefix(&dir) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => folder.display().to_string(),
    };
    if mount.contains(['"', '\n', ':', '$']) || file.contains(['"', '\n', ':', '$']) {
        bail!(
            "the policy's path `{}` holds a character compose.yaml cannot carry (\", :, $)",
            policy.display()
        );
    }
    Ok((mount, file))
}

/// The repository's compose.yaml with this policy's folder and file.
fn compose_for(mount: &str, file: &str) -> Result<String> {
    let (volume, env) = ("- ./policies:/app/policies:ro", "FARAMESH_POLICY: /app/policies/default.yaml");
    if !COMPOSE.contains(volume) || !COMPOSE.contains(env) {
        bail!("the bundled compose.yaml does not mount ./policies");
    }
    Ok(COMPOSE
        .replace(volume, &format!("- \"{mount}:/app/policies:ro\""))
        .replace(env, &format!("FARAMESH_POLICY: /app/policies/{file}")))
}

fn write_env(path: &Path) -> Result<()> {
    let token = || faramesh_log::random_hex(24).context("cannot read /dev/urandom");
    let text = format!(
        "# Tokens for compose.yaml; keep this file private. Agents send FARAMESH_TOKEN as a bearer\n\
         # token; approvers send FARAMESH_APPROVER_TOKEN, and sign in to the dashboard with it.\n\
         FARAMESH_TOKEN={}\nFARAMESH_APPROVER_TOKEN={}\n",
        token()?,
        token()?
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Lays out the image's files: `root/` (the binary, its shared libraries, the default policy,
/// /etc/passwd and /etc/group, /tmp) and `data/` (the empty state dir, owned by the image's user
/// through the Dockerfile). Returns how many libraries were copied.
fn image_tree(tree: &Path) -> Result<usize> {
    let exe = std::env::current_exe().context("cannot find this faramesh binary")?;
    let root = tree.join("root");
    let put = |path: &str, bytes: &[u8], mode: u32| -> Result<()> {
        let dest = root.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&dest, bytes).with_context(|| format!("cannot write `{}`", dest.display()))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of `{}`", dest.display()))
    };
    let binary = std::fs::read(&exe).with_context(|| format!("cannot read `{}`", exe.display()))?;
    put("usr/local/bin/faramesh", &binary, 0o755)?;
    let libs = shared_libraries(&exe)?;
    for lib in &libs {
        let bytes = std::fs::read(lib).with_context(|| format!("cannot read `{}`", lib.display()))?;
        let inside = lib.strip_prefix("/").unwrap_or(lib);
        put(&inside.to_string_lossy(), &bytes, 0o755)?;
    }
    put("app/policies/default.yaml", crate::setup_cmd::DEFAULT_POLICY.as_bytes(), 0o644)?;
    put(
        "etc/passwd",
        format!("root:x:0:0:root:/root:/sbin/nologin\nfaramesh:x:{IMAGE_UID}:{IMAGE_UID}:faramesh:/app/data:/sbin/nologin\n")
            .as_bytes(),
        0o644,
    )?;
    put("etc/group", format!("root:x:0:\nfaramesh:x:{IMAGE_UID}:\n").as_bytes(), 0o644)?;
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    let data = tree.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create `{}`", data.display()))?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    Ok(libs.len())
}

/// The shared libraries (and the dynamic loader) `ldd` names for `exe`; none for a static binary.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(exe)
        .output()
        .context("cannot run `ldd` to find the shared libraries faramesh links (install libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || why.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("`ldd {}` failed: {}", exe.display(), why.trim());
    }
    parse_ldd(&text)
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("a shared library is missing: {line}");
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`;
        // the vdso has no path.
        let path = line.split_once("=>").map_or(line, |(_, p)| p).trim();
        let path = path.split(" (").next().unwrap_or_default().trim();
        let path = Path::new(path);
        if path.is_absolute() && path.components().all(|c| !matches!(c, Component::ParentDir)) {
            libs.push(path.to_path_buf());
        }
    }
    Ok(libs)
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh health --addr 127.0.0.1:8000")]
pub struct HealthArgs {
    /// The HTTP listener to ask (plain HTTP). Default: FARAMESH_LISTEN (0.0.0.0 or [::] meaning
    /// this host's loopback), else FARAMESH_HOST:FARAMESH_PORT, else 127.0.0.1:8000.
    #[arg(long, value_name = "ADDR")]
    addr: Option<String>,
}

/// `GET /health`: exit 0 when the listener answers 200, 1 otherwise (the image's healthcheck).
pub fn health(args: HealthArgs) -> Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let wanted = args.addr.or_else(|| env("FARAMESH_LISTEN")).unwrap_or_else(|| {
        format!(
            "{}:{}",
            env("FARAMESH_HOST").unwrap_or_else(|| "127.0.0.1".into()),
            env("FARAMESH_PORT").unwrap_or_else(|| "8000".into())
        )
    });
    let mut addr: std::net::SocketAddr =
        wanted.parse().map_err(|_| anyhow!("`{wanted}` is not an address like 127.0.0.1:8000"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("nothing answers on {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer).with_context(|| format!("no answer from {addr}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if status.split(' ').nth(1) == Some("200") {
        println!("{addr}: {body}");
        return Ok(ExitCode::SUCCESS);
    }
    let shown =
        if status.is_empty() { "no HTTP answer (a TLS listener? use `faramesh status`)" } else { status };
    eprintln!("faramesh: {addr}/health: {shown}");
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_dockerfile_is_the_runtime_stage_reading_the_image_folder() {
        let text = runtime_dockerfile().unwrap();
        assert!(!text.contains("--from=build"), "{text}");
        assert!(!text.contains("cargo build"), "{text}");
        assert!(text.contains("COPY faramesh-image/root/ /"), "{text}");
        assert!(text.contains("COPY --chown=10001:10001 faramesh-image/data/ /app/data/"), "{text}");
        assert!(text.contains("HEALTHCHECK"), "{text}");
    }

    #[test]
    fn compose_mounts_the_policy_folder_and_names_the_file() {
        let text = compose_for("./conf", "payments.yaml").unwrap();
        assert!(text.contains("- \"./conf:/app/policies:ro\""), "{text}");
        assert!(text.contains("FARAMESH_POLICY: /app/policies/payments.yaml"), "{text}");
        assert!(!text.contains("./policies:"), "{text}");
    }

    #[test]
    fn ldd_output_gives_library_paths_and_skips_the_vdso() {
        let libs = parse_ldd(
            "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4e)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f4e)\n",
        )
        .unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }
}
