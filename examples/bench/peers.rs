//! Where the peers come from, and how each is started.
//!
//! - **ours**: the `authful-mcp-proxy` binary of the profile this example was built in, found
//!   next to it (`target/<profile>/examples/bench` → `target/<profile>/authful-mcp-proxy`).
//!   `cargo run --example` does not build binaries, so the bench asks cargo to build it (a
//!   no-op when it is current). Which build depends on the profile, because cargo resolves
//!   features per command: a build that includes tests or examples enables the features that
//!   dev-dependencies ask for (rmcp's server side, here), a plain `cargo build` does not.
//!   - release: `cargo build --release --bin authful-mcp-proxy`, the binary users install,
//!     so that its size and speed are the shipped ones;
//!   - debug (CI's smoke run after `cargo test`): the same build with `--example bench`
//!     added, which resolves features as `cargo test` did, so it finds the binary `cargo test`
//!     just built instead of building another (and `cargo test` rebuilding it back).
//! - **mcp-remote** (npm `mcp-remote@0.15.1`) and **server-everything**
//!   (`@modelcontextprotocol/server-everything`), run with `node` on their installed entry
//!   points (no `npx`: nothing is fetched while measuring).
//! - **the Python original** (PyPI `authful-mcp-proxy==0.3.0` on `fastmcp<4`), run as
//!   `python -m authful_mcp_proxy` from a venv.
//!
//! The full run installs what is missing into `target/bench-peers/` (`npm install --prefix`,
//! `python3 -m venv` + `pip install`); `--quick` only uses what is there, so it needs neither
//! the network nor npm or pip. A peer that is not available is skipped with the reason.
//!
//! Every peer starts with a clean environment — `PATH`, a `HOME` of the bench's own under
//! `target/bench/`, no proxy variables — and `BROWSER=true`: a browser that opens nothing, since
//! the bench follows the login URL the peer prints itself (see `login`).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::Command;

use crate::child::Guarded;

/// The npm packages, pinned.
const MCP_REMOTE: &str = "mcp-remote@0.15.1";
const EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
/// The PyPI requirements of the Python original.
const PYTHON_ORIGINAL: [&str; 2] = ["authful-mcp-proxy==0.3.0", "fastmcp<4"];
/// Written into the venv once pip succeeded, so that a half-made venv is made again.
const VENV_READY: &str = ".bench-ready";

/// The directories the bench works in.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `target/<profile>`.
    pub profile_dir: PathBuf,
    /// `target/`.
    pub target: PathBuf,
    /// `target/bench/`: logs, homes, token caches, configurations of this run.
    pub run: PathBuf,
    /// `target/bench-peers/`: installed third-party peers, kept between runs.
    pub peers: PathBuf,
    /// The profile's directory name: `debug` or `release`.
    pub profile: String,
}

impl Dirs {
    /// Derives the directories from this executable's path.
    pub fn locate() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot locate the bench: {e}"))?;
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("unexpected location of the bench: {}", exe.display()))?
            .to_path_buf();
        let target = profile_dir
            .parent()
            .ok_or_else(|| format!("no target directory above {}", profile_dir.display()))?
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        Ok(Self {
            run: target.join("bench"),
            peers: target.join("bench-peers"),
            profile_dir,
            target,
            profile,
        })
    }

    /// A fresh `target/bench/`, with the subdirectory for logs.
    pub fn prepare(&self) -> Result<(), String> {
        if self.run.exists() {
            std::fs::remove_dir_all(&self.run)
                .map_err(|e| format!("cannot clear {}: {e}", self.run.display()))?;
        }
        std::fs::create_dir_all(self.run.join("logs"))
            .map_err(|e| format!("cannot create {}: {e}", self.run.display()))
    }

    /// The log file for `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.run.join("logs").join(format!("{name}.log"))
    }

    /// A directory of its own under `target/bench/` (a `HOME`, a token cache).
    pub fn dir(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.run.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

/// The first `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Our binary, built from the current source by cargo when cargo is at hand.
pub async fn ours(dirs: &Dirs) -> Result<PathBuf, String> {
    let bin = dirs.profile_dir.join("authful-mcp-proxy");
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| find_on_path("cargo"));
    let Some(cargo) = cargo else {
        return if bin.is_file() {
            println!("cargo not found: measuring {} as it is", bin.display());
            Ok(bin)
        } else {
            Err(format!(
                "{} is missing and cargo is not available to build it: run `cargo build{}` first",
                bin.display(),
                if dirs.profile == "release" {
                    " --release"
                } else {
                    ""
                }
            ))
        };
    };
    let profile = match dirs.profile.as_str() {
        "debug" => "dev",
        other => other,
    };
    if !bin.is_file() {
        println!(
            "{} is missing: building it (cargo build --profile {profile} --bin authful-mcp-proxy)",
            bin.display()
        );
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--profile", profile])
        .args(["--bin", "authful-mcp-proxy"]);
    if dirs.profile == "debug" {
        // The example exists only with its feature (Cargo.toml); without it cargo refuses.
        build.args(["--example", "bench", "--features", "bench"]);
    }
    build
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&dirs.target)
        .env("RUST_BACKTRACE", "0");
    let status = build
        .status()
        .await
        .map_err(|e| format!("cannot run cargo to build the proxy: {e}"))?;
    if !status.success() || !bin.is_file() {
        return Err(format!(
            "building {} failed ({status}); see cargo's output above",
            bin.display()
        ));
    }
    Ok(bin)
}

/// A peer that can run, or why not.
pub type Availability = Result<PathBuf, String>;

/// The third-party peers and the programs that run them.
pub struct ThirdParty {
    /// `node`.
    pub node: Availability,
    /// mcp-remote's `dist/proxy.js`.
    pub mcp_remote: Availability,
    /// server-everything's `dist/index.js`.
    pub everything: Availability,
    /// The venv's `python` with the Python original installed.
    pub python: Availability,
}

impl ThirdParty {
    fn mcp_remote_entry(dirs: &Dirs) -> PathBuf {
        dirs.peers.join("npm/node_modules/mcp-remote/dist/proxy.js")
    }

    fn everything_entry(dirs: &Dirs) -> PathBuf {
        dirs.peers
            .join("npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
    }

    fn venv(dirs: &Dirs) -> PathBuf {
        dirs.peers.join("venv")
    }

    /// What is installed; with `install`, first installs what is missing.
    pub async fn locate(dirs: &Dirs, install: bool) -> Self {
        let node = find_on_path("node").ok_or_else(|| "node is not on PATH".to_owned());
        let npm_missing =
            !Self::mcp_remote_entry(dirs).is_file() || !Self::everything_entry(dirs).is_file();
        let npm_result = match (&node, install && npm_missing) {
            (Ok(_), true) => install_npm(dirs).await,
            _ => Ok(()),
        };
        let python_ready = Self::venv(dirs).join(VENV_READY).is_file();
        let python_result = if install && !python_ready {
            install_python(dirs).await
        } else {
            Ok(())
        };
        let npm_entry = |entry: PathBuf| -> Availability {
            node.as_ref()
                .map_err(|e| format!("{e} (install Node.js)"))?;
            npm_result.clone()?;
            if entry.is_file() {
                Ok(entry)
            } else if install {
                Err(format!("{} is missing after npm install", entry.display()))
            } else {
                Err("not installed (a full run installs it)".to_owned())
            }
        };
        let python = python_result.and_then(|()| {
            let python = Self::venv(dirs).join("bin/python");
            if Self::venv(dirs).join(VENV_READY).is_file() && python.is_file() {
                Ok(python)
            } else {
                Err("not installed (a full run installs it)".to_owned())
            }
        });
        Self {
            mcp_remote: npm_entry(Self::mcp_remote_entry(dirs)),
            everything: npm_entry(Self::everything_entry(dirs)),
            python,
            node,
        }
    }
}

/// `npm install --prefix target/bench-peers/npm` of the pinned packages.
async fn install_npm(dirs: &Dirs) -> Result<(), String> {
    let Some(npm) = find_on_path("npm") else {
        return Err("npm is not on PATH (install Node.js with npm)".to_owned());
    };
    println!(
        "installing {MCP_REMOTE} and {EVERYTHING} into {}",
        dirs.peers.display()
    );
    let mut cmd = Command::new(npm);
    cmd.arg("install")
        .arg("--prefix")
        .arg(dirs.peers.join("npm"))
        .args([
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            MCP_REMOTE,
            EVERYTHING,
        ]);
    run_logged(cmd, &dirs.peers.join("npm-install.log"), "npm install").await
}

/// A venv in `target/bench-peers/venv` with the Python original.
async fn install_python(dirs: &Dirs) -> Result<(), String> {
    let Some(python3) = find_on_path("python3") else {
        return Err("python3 is not on PATH (install Python 3.10 or later)".to_owned());
    };
    let venv = ThirdParty::venv(dirs);
    println!(
        "installing the Python original ({}) into {}",
        PYTHON_ORIGINAL.join(", "),
        venv.display()
    );
    let log = dirs.peers.join("pip-install.log");
    let mut create = Command::new(python3);
    create.args(["-m", "venv", "--clear"]).arg(&venv);
    run_logged(create, &log, "python3 -m venv").await?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "--quiet",
        "--no-input",
        "--disable-pip-version-check",
    ])
    .args(PYTHON_ORIGINAL);
    run_logged(pip, &log, "pip install").await?;
    std::fs::write(venv.join(VENV_READY), PYTHON_ORIGINAL.join("\n"))
        .map_err(|e| format!("cannot mark the venv ready: {e}"))
}

/// Runs an installer with its output in `log`, for at most ten minutes.
async fn run_logged(mut cmd: Command, log: &Path, what: &str) -> Result<(), String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = Guarded::spawn(cmd, what)?;
    let status = tokio::time::timeout(Duration::from_secs(600), child.child.wait()).await;
    let status = match status {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("{what}: {e}")),
        Err(_) => {
            child.stop(Duration::ZERO).await;
            return Err(format!(
                "{what} took over 10 minutes (log: {})",
                log.display()
            ));
        }
    };
    child.stop(Duration::ZERO).await;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}); log: {}", log.display()))
    }
}

/// A command with the clean environment every peer gets.
fn clean(program: impl Into<OsString>, home: &Path) -> Command {
    let mut cmd = Command::new(program.into());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("BROWSER", "true")
        .env("RUST_BACKTRACE", "0");
    cmd
}

/// The drop-in's settings, as a desktop client's configuration sets them (the Python original
/// takes the same).
#[derive(Clone)]
pub struct DropIn {
    /// `MCP_BACKEND_URL`.
    pub backend_url: String,
    /// `OIDC_ISSUER_URL`.
    pub issuer: String,
    /// `OIDC_CLIENT_ID`.
    pub client_id: String,
    /// The port of `OIDC_REDIRECT_URL` (`http://localhost:PORT/auth/callback`).
    pub redirect_port: u16,
    /// `HOME`: the Python original keeps its tokens under `~/.mcp-auth/`, ours under
    /// `~/.fastmcp/oauth-mcp-client-cache/` (the default `cache_dir`).
    pub home: PathBuf,
}

impl DropIn {
    fn apply(&self, cmd: &mut Command) {
        cmd.env("MCP_BACKEND_URL", &self.backend_url)
            .env("OIDC_ISSUER_URL", &self.issuer)
            .env("OIDC_CLIENT_ID", &self.client_id)
            .env(
                "OIDC_REDIRECT_URL",
                format!("http://localhost:{}/auth/callback", self.redirect_port),
            );
    }

    /// The same settings against another backend.
    pub fn with_backend(&self, url: &str) -> Self {
        Self {
            backend_url: url.to_owned(),
            ..self.clone()
        }
    }
}

/// Our binary as the drop-in.
pub fn ours_command(bin: &Path, drop_in: &DropIn) -> Command {
    let mut cmd = clean(bin, &drop_in.home);
    drop_in.apply(&mut cmd);
    cmd.arg("--no-banner");
    cmd
}

/// Our binary as a gateway on a configuration file.
pub fn gateway_command(bin: &Path, config: &Path, home: &Path) -> Command {
    let mut cmd = clean(bin, home);
    cmd.arg("--config").arg(config).arg("--no-banner");
    cmd
}

/// The Python original as the drop-in.
pub fn python_command(python: &Path, drop_in: &DropIn) -> Command {
    let mut cmd = clean(python, &drop_in.home);
    drop_in.apply(&mut cmd);
    cmd.args(["-m", "authful_mcp_proxy", "--no-banner"]);
    cmd
}

/// mcp-remote on `url`, with a static bearer token when the backend wants one (mcp-remote
/// cannot log in to an external OIDC provider: that is what this project is for).
pub fn mcp_remote_command(
    node: &Path,
    entry: &Path,
    url: &str,
    token: Option<&str>,
    home: &Path,
) -> Command {
    let mut cmd = clean(node, home);
    cmd.arg(entry).arg(url);
    if let Some(token) = token {
        cmd.arg("--header")
            .arg(format!("Authorization: Bearer {token}"));
    }
    cmd
}

/// server-everything's Streamable HTTP transport on `127.0.0.1:port`. It listens on every
/// interface and has no option against it, so `loopback.mjs` is preloaded to pin the listen
/// call to 127.0.0.1.
pub fn everything_command(node: &Path, entry: &Path, port: u16, home: &Path) -> Command {
    let loopback = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench/loopback.mjs");
    let mut cmd = clean(node, home);
    cmd.arg("--import")
        .arg(format!("file://{}", loopback.display()))
        .arg(entry)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    cmd
}

/// server-everything, listening on 127.0.0.1.
pub struct Everything {
    /// Its process group, ended on drop.
    _process: Guarded,
    /// Its MCP endpoint.
    pub url: String,
}

/// Starts server-everything and waits until it accepts connections.
pub async fn start_everything(
    node: &Path,
    entry: &Path,
    dirs: &Dirs,
) -> Result<Everything, String> {
    let port = crate::support::free_port();
    let log = dirs.log("server-everything");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = everything_command(node, entry, port, &dirs.dir("home-everything")?);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut process = Guarded::spawn(cmd, "server-everything")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(Everything {
                _process: process,
                url: format!("http://127.0.0.1:{port}/mcp"),
            });
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(format!(
                "server-everything exited ({status}) before listening\n{}",
                crate::rpc::log_tail(&log)
            ));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "server-everything did not listen on port {port} within 30 s\n{}",
                crate::rpc::log_tail(&log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
