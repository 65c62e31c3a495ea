//! Our proxy as a gateway at scale: 20 backends × 500 tools, against one backend alone.
//!
//! A platform team's configuration puts many servers behind one entry. What that costs shows
//! in four figures, each measured for the 20-backend gateway and for a gateway with one of the
//! same backends (every backend is identical, so one stands for "the slowest alone"):
//!
//! - spawn → `initialize` result (every backend is connected concurrently);
//! - spawn → the first complete `tools/list` (10,000 tools: the gateway reads every backend's
//!   list and merges them);
//! - a second `tools/list`, answered from the gateway's memory (the median of five);
//! - calls spread over all backends (and their tools), one at a time.
//!
//! These gateways remember nothing between runs (`remember_lists: false`): each first list is
//! read from the backends. A fifth figure is the other case, a start with every backend
//! [remembered](../../src/remembered.rs) from the run before and backends that now take 2 s to
//! answer anything (far away, or busy): spawn → `initialize` and → the complete `tools/list`,
//! which the gateway answers from what it remembers while the backends connect.
//!
//! The backends are the bench's own (`backend`), without token checks: the token path is
//! measured elsewhere, and here only the fan-out may differ.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    backend::BenchBackend,
    measure::{Percentiles, echo_args, median},
    peers::{Dirs, gateway_command},
    procstat,
    rpc::{Stderr, StdioPeer},
};

/// How big, and how often.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    /// Backends of the big gateway.
    pub backends: usize,
    /// Tools of each backend.
    pub tools: usize,
    /// Gateway starts timed (the median is reported).
    pub runs: usize,
    /// Calls spread over the backends, in the last run.
    pub calls: usize,
}

/// What one gateway configuration measured.
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    /// Backends behind it.
    pub backends: usize,
    /// Tools in its list.
    pub tools: usize,
    /// Size of that list's JSON-RPC response, in bytes.
    pub list_bytes: usize,
    /// Median spawn → `initialize` result.
    pub initialize: Duration,
    /// Median spawn → first complete `tools/list`.
    pub first_list: Duration,
    /// Median CPU time the gateway used from spawn to that list.
    pub gateway_cpu: Duration,
    /// Median CPU time the bench process used meanwhile: the backends serving it, and the
    /// bench's client reading the list. Together with `gateway_cpu` it says how much of the
    /// wait was two CPUs busy rather than the gateway waiting.
    pub backends_cpu: Duration,
    /// Median of later `tools/list`s.
    pub second_list: Duration,
    /// Latency of the calls spread over the backends.
    pub calls: Percentiles,
    /// How many calls.
    pub call_count: usize,
}

/// How long the backends take to answer in the warm start.
pub const SLOW_BACKENDS: Duration = Duration::from_secs(2);

/// The big gateway started with every backend remembered, its backends slow.
#[derive(Debug, Clone)]
pub struct WarmFigures {
    /// Backends behind it.
    pub backends: usize,
    /// Tools in its first list.
    pub tools: usize,
    /// Median spawn → `initialize` result.
    pub initialize: Duration,
    /// Median spawn → the complete first `tools/list`.
    pub first_list: Duration,
}

/// Runs the big gateway and the one-backend gateway, then the big one warm with slow backends.
pub async fn run(
    bin: &Path,
    dirs: &Dirs,
    plan: &ScalePlan,
) -> Result<([ScaleFigures; 2], WarmFigures), String> {
    let mut backends = Vec::with_capacity(plan.backends);
    for n in 1..=plan.backends {
        backends.push(BenchBackend::start(&format!("b{n:02}"), plan.tools, None).await?);
    }
    let home = dirs.dir("home-gateway")?;
    let all = write_config(dirs, "gateway-all", &backends, false)?;
    let one = write_config(dirs, "gateway-one", &backends[..1], false)?;
    let many = measure(bin, &all, &home, dirs, plan, plan.backends).await?;
    let single = measure(bin, &one, &home, dirs, plan, 1).await?;
    let warm = warm(bin, dirs, plan, &backends).await?;
    Ok(([many, single], warm))
}

/// The warm start: one run that leaves every backend remembered, then starts with slow
/// backends, each timed to its complete first list.
async fn warm(
    bin: &Path,
    dirs: &Dirs,
    plan: &ScalePlan,
    backends: &[BenchBackend],
) -> Result<WarmFigures, String> {
    let home = dirs.dir("home-gateway-warm")?;
    let config = write_config(dirs, "gateway-warm", backends, true)?;
    let label = "warm gateway";
    let log = dirs.log("gateway-warm");
    let expected = backends.len() * plan.tools;
    // The run that remembers, with backends at full speed; its lists are written in the
    // background once read, so it stays until they are.
    let mut peer = StdioPeer::spawn(
        gateway_command(bin, &config, &home),
        label,
        Stderr::File(log.clone()),
    )?;
    peer.initialize().await?;
    peer.request("tools/list", json!({})).await?;
    let remembered = home.join(".fastmcp/oauth-mcp-client-cache/remembered");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&remembered).map_or(0, |d| d.count()) < backends.len() {
        if Instant::now() > deadline {
            return Err(peer.failure(&format!(
                "{} holds no entry per backend after 30 s",
                remembered.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peer.close().await;
    for backend in backends {
        backend.set_delay(SLOW_BACKENDS);
    }
    let (mut inits, mut firsts) = (Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        let started = Instant::now();
        let mut peer = StdioPeer::spawn(
            gateway_command(bin, &config, &home),
            label,
            Stderr::File(log.clone()),
        )?;
        let (_, initialized) = peer.initialize().await?;
        inits.push(initialized - started);
        let first = peer.request("tools/list", json!({})).await?;
        firsts.push(first.at - started);
        let listed = tool_count(&first.result()?);
        if listed != expected {
            return Err(peer.failure(&format!(
                "listed {listed} remembered tools, expected {expected}"
            )));
        }
        peer.close().await;
    }
    for backend in backends {
        backend.set_delay(Duration::ZERO);
    }
    Ok(WarmFigures {
        backends: backends.len(),
        tools: expected,
        initialize: median(&inits),
        first_list: median(&firsts),
    })
}

/// A gateway configuration with `backends` as `b01`, `b02`, ...; `remember`: its lists are kept
/// for the next start.
fn write_config(
    dirs: &Dirs,
    name: &str,
    backends: &[BenchBackend],
    remember: bool,
) -> Result<PathBuf, String> {
    let mut yaml = String::from("backends:\n");
    for (n, backend) in backends.iter().enumerate() {
        let _ = writeln!(yaml, "  b{:02}:\n    url: {}", n + 1, backend.url());
    }
    yaml.push_str("gateway:\n  name: bench-gateway\n  startup_timeout: 30\n");
    let _ = writeln!(yaml, "  remember_lists: {remember}");
    let path = dirs.run.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

async fn measure(
    bin: &Path,
    config: &Path,
    home: &Path,
    dirs: &Dirs,
    plan: &ScalePlan,
    backends: usize,
) -> Result<ScaleFigures, String> {
    let label = format!("gateway with {backends} backend(s)");
    let log = dirs.log(&format!("gateway-{backends}"));
    let expected = backends * plan.tools;
    let (mut inits, mut firsts, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut gateway_cpu, mut backends_cpu) = (Vec::new(), Vec::new());
    let mut calls = Percentiles::of(&[]);
    let mut list_bytes = 0;
    for run in 0..plan.runs {
        let bench_before = procstat::sample(std::process::id());
        let started = Instant::now();
        let cmd = gateway_command(bin, config, home);
        let mut peer = StdioPeer::spawn(cmd, &label, Stderr::File(log.clone()))?;
        let (_, initialized) = peer.initialize().await?;
        inits.push(initialized - started);
        let first = peer.request("tools/list", json!({})).await?;
        firsts.push(first.at - started);
        // The gateway is the child's whole tree; a fresh process starts from zero.
        gateway_cpu.push(
            procstat::Sample::default()
                .until(&procstat::sample(peer.pid()))
                .cpu,
        );
        backends_cpu.push(
            bench_before
                .until(&procstat::sample(std::process::id()))
                .cpu,
        );
        list_bytes = first.line.len();
        let listed = tool_count(&first.result()?);
        if listed != expected {
            return Err(peer.failure(&format!("listed {listed} tools, expected {expected}")));
        }
        for _ in 0..5 {
            let asked = Instant::now();
            let again = peer.request("tools/list", json!({})).await?;
            seconds.push(again.at - asked);
        }
        if run + 1 == plan.runs {
            calls = spread_calls(&mut peer, backends, plan).await?;
        }
        peer.close().await;
    }
    Ok(ScaleFigures {
        backends,
        tools: expected,
        list_bytes,
        initialize: median(&inits),
        first_list: median(&firsts),
        gateway_cpu: median(&gateway_cpu),
        backends_cpu: median(&backends_cpu),
        second_list: median(&seconds),
        calls,
        call_count: plan.calls,
    })
}

fn tool_count(result: &Value) -> usize {
    result["tools"].as_array().map_or(0, Vec::len)
}

/// Calls round-robin over the backends, walking through each backend's tools.
async fn spread_calls(
    peer: &mut StdioPeer,
    backends: usize,
    plan: &ScalePlan,
) -> Result<Percentiles, String> {
    let args = echo_args();
    let mut latencies = Vec::with_capacity(plan.calls);
    for i in 0..plan.calls {
        let backend = i % backends + 1;
        let tool = match (i / backends) % plan.tools {
            0 => "echo".to_owned(),
            n => format!("tool_{n:04}"),
        };
        let started = Instant::now();
        peer.call(&format!("b{backend:02}_{tool}"), &args).await?;
        latencies.push(started.elapsed());
    }
    Ok(Percentiles::of(&latencies))
}
