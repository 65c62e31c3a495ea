//! The figures of one peer on one backend: startup, latency, throughput, CPU, context
//! switches and memory — measured the same way for every stdio peer, and for "direct".
//!
//! - **startup**: from `spawn` to the `initialize` result, warm token cache, the median of
//!   [`Plan::startups`] fresh processes. The request is written right after spawning (the pipe
//!   holds it), as desktop clients do.
//! - **latency**: [`Plan::latency_calls`] sequential `tools/call echo` on one session, after
//!   [`Plan::warmup`] calls that fill caches, pools and JITs; p50, p90, p99.
//! - **CPU and context switches per call**: the peer's process tree during the latency run
//!   (see `procstat`), divided by the number of calls; optionally `perf stat` around it.
//! - **throughput**: calls per second with 1, 8 and 32 requests in flight (a fixed number of
//!   calls, or fewer when they take longer than [`Plan::throughput_budget`]).
//! - **peak RSS**: the tree's `VmHWM` after all of that.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    child::Guarded,
    direct::Direct,
    peers::find_on_path,
    procstat,
    rpc::{Stderr, StdioPeer},
};

/// How much of everything.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Fresh processes timed to `initialize`.
    pub startups: usize,
    /// Calls before the latency run.
    pub warmup: usize,
    /// Sequential calls timed one by one.
    pub latency_calls: usize,
    /// `(requests in flight, calls)` of each throughput run.
    pub throughput: Vec<(usize, usize)>,
    /// Longest time a throughput run starts new calls: the slowest peers do fewer calls.
    pub throughput_budget: Duration,
}

/// The tool every peer calls, and its arguments.
pub const ECHO: &str = "echo";

/// The arguments of every echo call.
pub fn echo_args() -> Value {
    json!({"message": "hello from the bench"})
}

/// p50, p90 and p99 of some durations.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// The `q`-quantile (nearest rank) of sorted samples; zero for none.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of some durations.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    quantile(&sorted, 0.5)
}

impl Percentiles {
    /// Of unsorted samples.
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort();
        Self {
            p50: quantile(&sorted, 0.5),
            p90: quantile(&sorted, 0.9),
            p99: quantile(&sorted, 0.99),
        }
    }
}

/// What one peer measured on one backend.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Median spawn → `initialize` result (none for direct).
    pub startup: Option<Duration>,
    /// Sequential call latency.
    pub latency: Percentiles,
    /// `(requests in flight, calls per second)`.
    pub throughput: Vec<(usize, f64)>,
    /// CPU time of the peer's tree per call during the latency run.
    pub cpu_per_call: Option<Duration>,
    /// The kernel's part of [`Figures::cpu_per_call`].
    pub system_per_call: Option<Duration>,
    /// Context switches of the peer's tree per call during the latency run.
    pub switches_per_call: Option<f64>,
    /// Threads that ended during the latency run (their switches are not counted).
    pub lost_threads: usize,
    /// Peak RSS of the peer's tree after the load, in bytes.
    pub peak_rss: Option<u64>,
    /// `perf stat` around the latency run, when asked for and available.
    pub perf: Option<String>,
    /// CPUs other processes kept busy during the latency run (see `procstat::Noise`).
    pub noise: f64,
}

/// Measures a stdio peer; `make` builds a fresh command for each process.
pub async fn stdio(
    make: &dyn Fn() -> Command,
    label: &str,
    log: &Path,
    plan: &Plan,
    perf: bool,
) -> Result<Figures, String> {
    let args = echo_args();
    let mut startups = Vec::with_capacity(plan.startups);
    for _ in 0..plan.startups {
        let started = Instant::now();
        let mut peer = StdioPeer::spawn(make(), label, Stderr::File(log.to_path_buf()))?;
        let (_, answered) = peer.initialize().await?;
        startups.push(answered - started);
        peer.close().await;
    }

    let mut peer = StdioPeer::spawn(make(), label, Stderr::File(log.to_path_buf()))?;
    peer.initialize().await?;
    for _ in 0..plan.warmup {
        peer.call(ECHO, &args).await?;
    }
    let perf = if perf {
        PerfStat::attach(peer.pid(), log).await
    } else {
        None
    };
    let noise = procstat::Noise::start();
    let before = procstat::sample(peer.pid());
    let mut latencies = Vec::with_capacity(plan.latency_calls);
    for _ in 0..plan.latency_calls {
        let started = Instant::now();
        peer.call(ECHO, &args).await?;
        latencies.push(started.elapsed());
    }
    let used = before.until(&procstat::sample(peer.pid()));
    let noise = noise.other_cpus();
    let perf = match perf {
        Some(perf) => Some(perf.finish().await),
        None => None,
    };

    let mut throughput = Vec::new();
    for &(in_flight, calls) in &plan.throughput {
        let (done, took) = peer
            .pipelined(calls, in_flight, plan.throughput_budget, ECHO, &args)
            .await?;
        throughput.push((in_flight, done as f64 / took.as_secs_f64()));
    }
    let peak_rss = procstat::peak_rss(peer.pid());
    peer.close().await;

    let calls = plan.latency_calls.max(1) as u32;
    Ok(Figures {
        startup: Some(median(&startups)),
        latency: Percentiles::of(&latencies),
        throughput,
        cpu_per_call: Some(used.cpu / calls),
        system_per_call: Some(used.system / calls),
        switches_per_call: Some(used.switches as f64 / f64::from(calls)),
        lost_threads: used.lost_threads,
        peak_rss: Some(peak_rss).filter(|&rss| rss > 0),
        perf,
        noise,
    })
}

/// Measures the direct HTTP session: latency and throughput only (no process of its own).
pub async fn direct(url: &str, token: Option<String>, plan: &Plan) -> Result<Figures, String> {
    let args = echo_args();
    let direct = Direct::connect(url, token).await?;
    for _ in 0..plan.warmup {
        direct.call(ECHO, &args).await?;
    }
    let noise = procstat::Noise::start();
    let mut latencies = Vec::with_capacity(plan.latency_calls);
    for _ in 0..plan.latency_calls {
        let started = Instant::now();
        direct.call(ECHO, &args).await?;
        latencies.push(started.elapsed());
    }
    let noise = noise.other_cpus();
    let mut throughput = Vec::new();
    for &(in_flight, calls) in &plan.throughput {
        let started = Instant::now();
        let done = futures::stream::iter(0..calls)
            .take_while(|_| futures::future::ready(started.elapsed() < plan.throughput_budget))
            .map(|_| direct.call(ECHO, &args))
            .buffer_unordered(in_flight)
            .try_fold(0, |done, ()| futures::future::ready(Ok(done + 1)))
            .await?;
        throughput.push((in_flight, done as f64 / started.elapsed().as_secs_f64()));
    }
    direct.close().await;
    Ok(Figures {
        startup: None,
        latency: Percentiles::of(&latencies),
        throughput,
        cpu_per_call: None,
        system_per_call: None,
        switches_per_call: None,
        lost_threads: 0,
        peak_rss: None,
        perf: None,
        noise,
    })
}

/// `perf stat` attached to a running process, for a second opinion on CPU and switches:
/// perf counts every thread, including those that end during the run.
struct PerfStat {
    perf: Guarded,
    output: std::path::PathBuf,
}

impl PerfStat {
    /// Starts `perf stat -p pid`, or says why not and returns `None`.
    async fn attach(pid: u32, log: &Path) -> Option<Self> {
        let Some(perf) = find_on_path("perf") else {
            println!("--perf: perf is not installed; skipping it");
            return None;
        };
        let output = log.with_extension("perf.txt");
        let mut cmd = Command::new(perf);
        cmd.args([
            "stat",
            "-e",
            "task-clock,context-switches,cpu-migrations",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&output)
        .stdin(std::process::Stdio::null());
        match Guarded::spawn(cmd, "perf stat") {
            Ok(perf) => {
                // perf needs a moment to attach to every thread before the first call.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some(Self { perf, output })
            }
            Err(e) => {
                println!("--perf: {e}");
                None
            }
        }
    }

    /// Stops perf (SIGINT makes it print its counts) and returns what it wrote.
    async fn finish(mut self) -> String {
        self.perf.interrupt();
        self.perf.stop(Duration::from_secs(5)).await;
        std::fs::read_to_string(&self.output)
            .unwrap_or_else(|e| format!("no perf output ({}): {e}", self.output.display()))
    }
}
