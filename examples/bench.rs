//! The benchmark: what the proxy costs a desktop MCP client, against the physical limit and
//! against the tools it replaces.
//!
//! ```text
//! cargo run --release --features bench --example bench             # full run, by hand (installs peers)
//! cargo run --release --features bench --example bench -- --quick  # short run, only what is installed
//! cargo run --features bench --example bench -- --quick            # CI: debug smoke run after `cargo test`
//! cargo run --release --features bench --example bench -- --perf   # also `perf stat` around our latency run
//! cargo run --release --features bench --example bench -- --quick --ours target/x86_64-unknown-linux-musl/release/authful-mcp-proxy
//!                                                  # a shipped build of ours (musl, manylinux)
//! ```
//!
//! Peers, all driven by the same raw JSON-RPC client over stdio (`rpc`):
//!
//! - **ours**: this crate's binary, of the profile the bench was built in, as the drop-in;
//! - **mcp-remote** 0.15.1 (npm), given the bearer token as a static header;
//! - **python**: the Python original, PyPI `authful-mcp-proxy` 0.3.0 on `fastmcp<4`;
//! - **direct**: the same calls straight to the backend over HTTP, the physical limit.
//!
//! Backends: the bench's own in-process Rust server, which validates bearer tokens of an
//! in-process OIDC provider (the integration tests' `FakeIdp`), so that our own cost is
//! visible; and, in the full run, `server-everything` over Streamable HTTP. Then our proxy as a
//! gateway of 20 backends × 500 tools (`scale`), and the token path (`token_path`).
//!
//! Everything listens on 127.0.0.1 and is stopped at the end, on errors and on Ctrl-C too.
//! The results go to stdout as one table and to `target/bench-results.json`. The bench fails
//! only when something is broken (a call of ours fails, a child will not start); slowness is
//! never a failure, and the issue's targets are printed as information. Logs of every process
//! are in `target/bench/logs/`.

// The integration tests' fakes (the OIDC provider, free ports).
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "bench/backend.rs"]
mod backend;
#[path = "bench/child.rs"]
mod child;
#[path = "bench/direct.rs"]
mod direct;
#[path = "bench/login.rs"]
mod login;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/procstat.rs"]
mod procstat;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/rpc.rs"]
mod rpc;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/token_path.rs"]
mod token_path;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use backend::{BenchBackend, TokenCheck};
use measure::{ECHO, Figures, Plan, echo_args};
use peers::{Dirs, DropIn, ThirdParty};
use report::{BinarySize, Machine, Report, Row};
use scale::ScalePlan;
use support::idp::{FakeIdp, IdpConfig};
use token_path::TokenPlan;

const USAGE: &str = "usage: cargo run [--release] --example bench -- [--quick] [--perf] [--ours PATH]\n\
    \n  --quick        short run with only the peers already installed (no network, no npm or pip)\
    \n  --perf         wrap our latency run in `perf stat` and print it\
    \n  --ours PATH    measure this binary as ours instead of building one (a shipped artifact:\
    \n                 the musl or manylinux build of a release, the binary inside a wheel)";

/// Command-line options.
struct Options {
    quick: bool,
    perf: bool,
    ours: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Self {
            quick: false,
            perf: false,
            ours: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--perf" => options.perf = true,
                "--ours" => {
                    let path = args.next().ok_or(format!("--ours needs a path\n{USAGE}"))?;
                    options.ours = Some(PathBuf::from(path));
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(options)
    }

    fn plan(&self) -> Plan {
        if self.quick {
            Plan {
                startups: 5,
                warmup: 50,
                latency_calls: 300,
                throughput: vec![(1, 200), (8, 400), (32, 800)],
                throughput_budget: Duration::from_secs(2),
            }
        } else {
            Plan {
                startups: 20,
                warmup: 50,
                latency_calls: 5_000,
                throughput: vec![(1, 2_000), (8, 4_000), (32, 8_000)],
                throughput_budget: Duration::from_secs(10),
            }
        }
    }

    fn scale(&self) -> ScalePlan {
        ScalePlan {
            backends: 20,
            tools: 500,
            runs: if self.quick { 1 } else { 5 },
            calls: if self.quick { 200 } else { 1_000 },
        }
    }

    fn token(&self) -> TokenPlan {
        TokenPlan {
            refreshes: if self.quick { 2 } else { 10 },
            cached_calls: 20,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("bench: cannot watch SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
    // On a signal the bench's future is dropped, and with it every child it started.
    let outcome = tokio::select! {
        outcome = run(&options) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        _ = terminate.recv() => Err("terminated".to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a progress line at once.
fn step(text: &str) {
    println!("- {text}");
    let _ = std::io::stdout().flush();
}

async fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let dirs = Dirs::locate()?;
    dirs.prepare()?;
    let machine = Machine::read(&dirs.profile);
    let noise = procstat::Noise::start();
    let plan = options.plan();
    println!(
        "authful-mcp-proxy bench ({} run, {} profile); logs in {}",
        if options.quick { "quick" } else { "full" },
        dirs.profile,
        dirs.run.join("logs").display()
    );
    let bin = match &options.ours {
        Some(path) if path.is_file() => {
            println!("measuring {} as ours", path.display());
            path.clone()
        }
        Some(path) => return Err(format!("--ours {}: no such file", path.display())),
        None => peers::ours(&dirs).await?,
    };
    let third = ThirdParty::locate(&dirs, !options.quick).await;

    let idp = FakeIdp::start(IdpConfig {
        client_id: "bench-desktop".into(),
        ..IdpConfig::default()
    })
    .await;
    let check = TokenCheck {
        issuer: idp.issuer(),
        jwks_uri: idp.jwks_uri(),
        audience: "mcp-backend".into(),
    };
    let rust = BenchBackend::start("bench-backend", 10, Some(check)).await?;
    let drop_in = |home: PathBuf| DropIn {
        backend_url: rust.url(),
        issuer: idp.issuer(),
        client_id: idp.client_id(),
        redirect_port: support::free_port(),
        home,
    };

    step("one real login for our token cache");
    let ours = drop_in(dirs.dir("home-ours")?);
    let login_cmd = peers::ours_command(&bin, &ours);
    let log = dirs.log("ours-login");
    login::warm_cache(
        login_cmd,
        "ours (login)",
        &log,
        login::OURS_MARKER,
        ECHO,
        &echo_args(),
    )
    .await?;
    let token = login::cached_access_token(&ours.home)?;
    let python = warm_python(&third, drop_in(dirs.dir("home-python")?), &dirs).await;

    let peers = Peers {
        bin: &bin,
        ours: &ours,
        token: &token,
        third: &third,
        python: &python,
        dirs: &dirs,
        plan: &plan,
        perf: options.perf,
    };
    let mut rows = peers.measure("rust", &rust.url(), true).await?;
    rows.extend(peers.on_everything(options.quick).await?);

    step(&format!(
        "gateway scale: {} backends × {} tools, one backend alone, and warm with slow backends",
        options.scale().backends,
        options.scale().tools
    ));
    let (scale, warm) = scale::run(&bin, &dirs, &options.scale()).await?;
    step("token path: cached token vs refresh");
    let token_figures = token_path::run(&bin, &dirs, &options.token()).await?;

    let report = Report {
        machine,
        quick: options.quick,
        rows,
        scale,
        warm,
        token: token_figures,
        binary: binary_size(&bin, &dirs),
        wall: started.elapsed(),
        other_cpus: noise.other_cpus(),
    };
    let results = dirs.target.join("bench-results.json");
    report.write_json(&results)?;
    println!("\n{}", report.text());
    println!("results: {}", results.display());
    Ok(())
}

/// The Python original's own login, when it is installed; the reason otherwise.
async fn warm_python(
    third: &ThirdParty,
    drop_in: DropIn,
    dirs: &Dirs,
) -> Result<(PathBuf, DropIn), String> {
    let python = third.python.clone().map_err(|e| format!("skipped: {e}"))?;
    step("one real login for the Python original's token cache");
    let log = dirs.log("python-login");
    let cmd = peers::python_command(&python, &drop_in);
    match login::warm_cache(
        cmd,
        "python (login)",
        &log,
        login::PYTHON_MARKER,
        ECHO,
        &echo_args(),
    )
    .await
    {
        Ok(()) => Ok((python, drop_in)),
        Err(e) => {
            println!("  the Python original did not start: {e}");
            Err(format!("did not start: {}", first_line(&e)))
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Everything needed to measure the peers on some backend.
struct Peers<'a> {
    bin: &'a Path,
    ours: &'a DropIn,
    token: &'a str,
    third: &'a ThirdParty,
    python: &'a Result<(PathBuf, DropIn), String>,
    dirs: &'a Dirs,
    plan: &'a Plan,
    perf: bool,
}

impl Peers<'_> {
    /// Every peer on the backend at `url`; `validates` says whether it wants a bearer token.
    async fn measure(
        &self,
        backend: &'static str,
        url: &str,
        validates: bool,
    ) -> Result<Vec<Row>, String> {
        let token = validates.then(|| self.token.to_owned());
        let plan = self.plan;
        let mut rows = Vec::new();

        step(&format!(
            "direct on {backend}: {} calls",
            plan.latency_calls
        ));
        let figures = measure::direct(url, token.clone(), plan).await?;
        rows.push(Row {
            peer: "direct",
            backend,
            outcome: Ok(figures),
        });

        self.announce("ours", backend);
        let ours = self.ours.with_backend(url);
        let make = || peers::ours_command(self.bin, &ours);
        let log = self.dirs.log(&format!("ours-{backend}"));
        let figures = measure::stdio(&make, "ours", &log, plan, self.perf).await?;
        rows.push(Row {
            peer: "ours",
            backend,
            outcome: Ok(figures),
        });

        let remote = match (&self.third.node, &self.third.mcp_remote) {
            (Ok(node), Ok(entry)) => {
                self.announce("mcp-remote", backend);
                let home = self.dirs.dir("home-mcp-remote")?;
                let make = || peers::mcp_remote_command(node, entry, url, token.as_deref(), &home);
                let log = self.dirs.log(&format!("mcp-remote-{backend}"));
                third_party(measure::stdio(&make, "mcp-remote", &log, plan, false).await)
            }
            (Err(e), _) | (_, Err(e)) => Err(format!("skipped: {e}")),
        };
        rows.push(Row {
            peer: "mcp-remote",
            backend,
            outcome: remote,
        });

        let python = match self.python {
            Ok((python, drop_in)) => {
                self.announce("python", backend);
                let drop_in = drop_in.with_backend(url);
                let make = || peers::python_command(python, &drop_in);
                let log = self.dirs.log(&format!("python-{backend}"));
                third_party(measure::stdio(&make, "python", &log, plan, false).await)
            }
            Err(reason) => Err(reason.clone()),
        };
        rows.push(Row {
            peer: "python",
            backend,
            outcome: python,
        });
        Ok(rows)
    }

    /// The peers on server-everything (full run only); rows saying why not otherwise.
    async fn on_everything(&self, quick: bool) -> Result<Vec<Row>, String> {
        let started = match (&self.third.node, &self.third.everything) {
            _ if quick => Err("skipped: full run only".to_owned()),
            (Ok(node), Ok(entry)) => {
                step("starting server-everything (Streamable HTTP on 127.0.0.1)");
                peers::start_everything(node, entry, self.dirs)
                    .await
                    .map_err(|e| {
                        format!(
                            "skipped: server-everything did not start: {}",
                            first_line(&e)
                        )
                    })
            }
            (Err(e), _) | (_, Err(e)) => Err(format!("skipped: {e}")),
        };
        match started {
            Ok(everything) => self.measure("everything", &everything.url, false).await,
            Err(reason) => Ok(["direct", "ours", "mcp-remote", "python"]
                .into_iter()
                .map(|peer| Row {
                    peer,
                    backend: "everything",
                    outcome: Err(reason.clone()),
                })
                .collect()),
        }
    }

    fn announce(&self, peer: &str, backend: &str) {
        let p = self.plan;
        step(&format!(
            "{peer} on {backend}: {} starts, {} calls, throughput at {}",
            p.startups,
            p.latency_calls,
            p.throughput
                .iter()
                .map(|(k, _)| k.to_string())
                .collect::<Vec<_>>()
                .join("/"),
        ));
    }
}

/// A third-party peer that fails is reported in its row, not as the bench's failure: it says
/// nothing about our proxy.
fn third_party(outcome: Result<Figures, String>) -> Result<Figures, String> {
    outcome.map_err(|e| {
        println!("  failed: {e}");
        format!("failed: {}", first_line(&e))
    })
}

/// Our binary's size, and its size stripped (of a copy, with `strip` when installed).
fn binary_size(bin: &Path, dirs: &Dirs) -> BinarySize {
    let bytes = std::fs::metadata(bin).map_or(0, |m| m.len());
    let stripped = peers::find_on_path("strip").and_then(|strip| {
        let copy = dirs.run.join("authful-mcp-proxy.stripped");
        std::fs::copy(bin, &copy).ok()?;
        let status = std::process::Command::new(strip).arg(&copy).status().ok()?;
        status
            .success()
            .then(|| std::fs::metadata(&copy).ok().map(|m| m.len()))?
    });
    BinarySize { bytes, stripped }
}
