//! The results: one aligned table of every peer on every backend, the gateway's scale and the
//! token path below it, the machine they ran on, the targets as ratios (information,
//! never a failure), and the same as JSON in `target/bench-results.json`.

use std::{fmt::Write as _, path::Path, time::Duration};

use serde_json::{Value, json};

use crate::{
    measure::Figures,
    scale::{SLOW_BACKENDS, ScaleFigures, WarmFigures},
    token_path::TokenFigures,
};

/// Where the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs available to the bench.
    pub nproc: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `debug` or `release`.
    pub profile: String,
    /// The 1-minute load average when the bench started: well above 0 means something else
    /// was running, and the figures are noisier than they should be.
    pub load: String,
}

impl Machine {
    /// Reads this machine's description.
    pub fn read(profile: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, name)| name.trim().to_owned(),
            );
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown kernel".to_owned(), |k| k.trim().to_owned());
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            kernel,
            profile: profile.to_owned(),
            load,
        }
    }

    /// One line for the table's heading.
    pub fn line(&self) -> String {
        format!(
            "machine: {} CPUs ({}), Linux {}, {} profile, load average {} at start",
            self.nproc, self.cpu, self.kernel, self.profile, self.load
        )
    }
}

/// One peer on one backend: its figures, or why there are none.
pub struct Row {
    /// `direct`, `ours`, `mcp-remote` or `python`.
    pub peer: &'static str,
    /// `rust` (in-process) or `everything`.
    pub backend: &'static str,
    /// The figures, or "skipped: ..." / "did not start: ...".
    pub outcome: Result<Figures, String>,
}

/// Size of our binary.
#[derive(Debug, Clone, Copy)]
pub struct BinarySize {
    /// As built.
    pub bytes: u64,
    /// After `strip`, if it is installed.
    pub stripped: Option<u64>,
}

/// Everything measured.
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Whether this was `--quick`.
    pub quick: bool,
    /// Every peer on every backend.
    pub rows: Vec<Row>,
    /// The 20-backend gateway and the one-backend gateway.
    pub scale: [ScaleFigures; 2],
    /// The big gateway started with its lists remembered and slow backends.
    pub warm: WarmFigures,
    /// Cached token vs refresh.
    pub token: TokenFigures,
    /// Our binary's size.
    pub binary: BinarySize,
    /// The bench's wall time.
    pub wall: Duration,
    /// CPUs other processes kept busy, on average, during the bench.
    pub other_cpus: f64,
}

/// CPUs busy with other processes above which a row gets a note.
const NOISY: f64 = 0.2;

/// One of the targets, with the measured value.
struct Ratio {
    target: &'static str,
    measured: Option<(f64, String)>,
    limit: f64,
    at_most: bool,
}

/// Calls per second with `in_flight` requests in flight.
fn rate_at(figures: &Figures, in_flight: usize) -> Option<f64> {
    figures
        .throughput
        .iter()
        .find(|(k, _)| *k == in_flight)
        .map(|(_, rate)| *rate)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report {
    fn figures(&self, peer: &str, backend: &str) -> Option<&Figures> {
        self.rows
            .iter()
            .find(|row| row.peer == peer && row.backend == backend)
            .and_then(|row| row.outcome.as_ref().ok())
    }

    /// p50 of a peer minus p50 of direct on the same backend.
    fn added_p50(&self, figures: &Figures, backend: &str) -> Option<f64> {
        let direct = self.figures("direct", backend)?;
        Some(us(figures.latency.p50) - us(direct.latency.p50))
    }

    /// The whole report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}; other processes kept {:.2} CPUs busy on average during the run",
            self.machine.line(),
            self.other_cpus
        );
        let _ = writeln!(
            out,
            "{} run; latency in µs, startup in ms (warm token cache), throughput in calls/s\n",
            if self.quick {
                "quick (--quick)"
            } else {
                "full"
            }
        );
        out.push_str(&self.peer_table());
        out.push('\n');
        out.push_str(&self.scale_block());
        let w = &self.warm;
        let _ = writeln!(
            out,
            "warm start ({} backends remembered, answering after {} s): initialize {:.1} ms, \
             complete tools/list ({} tools) {:.1} ms",
            w.backends,
            SLOW_BACKENDS.as_secs(),
            ms(w.initialize),
            w.tools,
            ms(w.first_list)
        );
        out.push('\n');
        out.push_str(&self.token_block());
        let stripped = self.binary.stripped.map_or_else(
            || "strip not available".to_owned(),
            |s| format!("{:.1} MiB stripped", mib(s)),
        );
        let _ = writeln!(
            out,
            "binary: authful-mcp-proxy {:.1} MiB ({stripped})\n",
            mib(self.binary.bytes)
        );
        out.push_str(&self.ratio_block());
        for row in &self.rows {
            if let Ok(Figures {
                perf: Some(perf), ..
            }) = &row.outcome
            {
                let _ = writeln!(
                    out,
                    "\nperf stat, {} on {} (latency run):{perf}",
                    row.peer, row.backend
                );
            }
        }
        let _ = writeln!(out, "\nbench wall time: {:.1} s", self.wall.as_secs_f64());
        out
    }

    fn peer_table(&self) -> String {
        let header = [
            "peer",
            "backend",
            "startup",
            "p50",
            "p90",
            "p99",
            "added p50",
            "@1",
            "@8",
            "@32",
            "CPU µs/call (sys)",
            "ctx sw/call",
            "peak RSS MiB",
        ];
        let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
        let mut notes = Vec::new();
        for row in &self.rows {
            let mut cells = vec![row.peer.to_owned(), row.backend.to_owned()];
            match &row.outcome {
                Ok(f) => {
                    let at = |k: usize| {
                        f.throughput
                            .iter()
                            .find(|(in_flight, _)| *in_flight == k)
                            .map_or("—".to_owned(), |(_, rate)| format!("{rate:.0}"))
                    };
                    cells.extend([
                        f.startup
                            .map_or("—".to_owned(), |s| format!("{:.1}", ms(s))),
                        format!("{:.0}", us(f.latency.p50)),
                        format!("{:.0}", us(f.latency.p90)),
                        format!("{:.0}", us(f.latency.p99)),
                        match (row.peer, self.added_p50(f, row.backend)) {
                            ("direct", _) | (_, None) => "—".to_owned(),
                            (_, Some(added)) => format!("{added:+.0}"),
                        },
                        at(1),
                        at(8),
                        at(32),
                        match (f.cpu_per_call, f.system_per_call) {
                            (Some(c), Some(s)) => format!("{:.1} ({:.0})", us(c), us(s)),
                            (Some(c), None) => format!("{:.1}", us(c)),
                            _ => "—".to_owned(),
                        },
                        f.switches_per_call
                            .map_or("—".to_owned(), |s| format!("{s:.2}")),
                        f.peak_rss
                            .map_or("—".to_owned(), |r| format!("{:.1}", mib(r))),
                    ]);
                    if f.noise > NOISY {
                        notes.push(format!(
                            "{} on {}: other processes kept {:.2} CPUs busy during its latency \
                             run; its figures are noisier than they should be",
                            row.peer, row.backend, f.noise
                        ));
                    }
                    if f.lost_threads > 0 {
                        notes.push(format!(
                            "{} on {}: {} thread(s) ended during the latency run; their context \
                             switches are not counted",
                            row.peer, row.backend, f.lost_threads
                        ));
                    }
                }
                Err(reason) => cells.push(reason.clone()),
            }
            lines.push(cells);
        }
        let mut out = align(&lines, 2);
        for note in notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn scale_block(&self) -> String {
        let mut lines = vec![
            [
                "gateway",
                "tools",
                "list MB",
                "initialize ms",
                "first tools/list ms",
                "CPU ms gateway/backends",
                "next tools/list ms",
                "calls",
                "call p50 µs",
                "call p99 µs",
            ]
            .iter()
            .map(|h| (*h).to_owned())
            .collect::<Vec<_>>(),
        ];
        for s in &self.scale {
            lines.push(vec![
                format!("{} backend(s)", s.backends),
                s.tools.to_string(),
                format!("{:.2}", s.list_bytes as f64 / 1e6),
                format!("{:.1}", ms(s.initialize)),
                format!("{:.1}", ms(s.first_list)),
                format!("{:.0}/{:.0}", ms(s.gateway_cpu), ms(s.backends_cpu)),
                format!("{:.2}", ms(s.second_list)),
                s.call_count.to_string(),
                format!("{:.0}", us(s.calls.p50)),
                format!("{:.0}", us(s.calls.p99)),
            ]);
        }
        align(&lines, 1)
    }

    fn token_block(&self) -> String {
        let t = &self.token;
        let first = t.first_refresh.map_or_else(String::new, |f| {
            format!(
                "; first refresh of the process (with discovery) {:.2} ms",
                ms(f)
            )
        });
        format!(
            "token path (ours): call with a cached token {:.0} µs; call that refreshes first \
             {:.2} ms (median of {} refreshes seen, {} planned){first}\n",
            us(t.cached),
            ms(t.refresh),
            t.refreshes_seen,
            t.refreshes_planned,
        )
    }

    fn ratios(&self) -> Vec<Ratio> {
        let ours = self.figures("ours", "rust");
        let direct = self.figures("direct", "rust");
        let remote = self.figures("mcp-remote", "rust");
        let ratio = |value: f64, shown: String| Some((value, shown));
        let [many, single] = &self.scale;
        vec![
            Ratio {
                target: "our p50 <= 1.15 × direct p50",
                measured: ours.zip(direct).and_then(|(o, d)| {
                    let r = us(o.latency.p50) / us(d.latency.p50);
                    ratio(r, format!("{r:.2}×"))
                }),
                limit: 1.15,
                at_most: true,
            },
            Ratio {
                target: "our p99 <= 1.3 × direct p99",
                measured: ours.zip(direct).and_then(|(o, d)| {
                    let r = us(o.latency.p99) / us(d.latency.p99);
                    ratio(r, format!("{r:.2}×"))
                }),
                limit: 1.3,
                at_most: true,
            },
            Ratio {
                target: "our added p50 <= 1/5 of mcp-remote's",
                measured: ours.zip(remote).and_then(|(o, r)| {
                    let (mine, theirs) = (self.added_p50(o, "rust")?, self.added_p50(r, "rust")?);
                    let q = mine / theirs;
                    ratio(
                        q,
                        format!("{mine:.0} µs / {theirs:.0} µs = 1/{:.1}", 1.0 / q),
                    )
                }),
                limit: 0.2,
                at_most: true,
            },
            Ratio {
                target: "CPU per call <= 100 µs",
                measured: ours
                    .and_then(|o| o.cpu_per_call)
                    .and_then(|c| ratio(us(c), format!("{:.1} µs", us(c)))),
                limit: 100.0,
                at_most: true,
            },
            Ratio {
                target: "context switches per call <= 4",
                measured: ours
                    .and_then(|o| o.switches_per_call)
                    .and_then(|s| ratio(s, format!("{s:.2}"))),
                limit: 4.0,
                at_most: true,
            },
            Ratio {
                target: "throughput @32 >= 0.95 × direct",
                measured: ours.zip(direct).and_then(|(o, d)| {
                    let r = rate_at(o, 32)? / rate_at(d, 32)?;
                    ratio(r, format!("{r:.2}×"))
                }),
                limit: 0.95,
                at_most: false,
            },
            Ratio {
                target: "startup <= 1/40 of mcp-remote's",
                measured: ours.zip(remote).and_then(|(o, r)| {
                    let q = ms(o.startup?) / ms(r.startup?);
                    ratio(q, format!("1/{:.0}", 1.0 / q))
                }),
                limit: 1.0 / 40.0,
                at_most: true,
            },
            Ratio {
                target: "peak RSS <= 1/15 of mcp-remote's",
                measured: ours.zip(remote).and_then(|(o, r)| {
                    let q = o.peak_rss? as f64 / r.peak_rss? as f64;
                    ratio(q, format!("1/{:.1}", 1.0 / q))
                }),
                limit: 1.0 / 15.0,
                at_most: true,
            },
            Ratio {
                target: "20-backend startup (to the full tools/list) <= 1.5 × one backend",
                measured: {
                    let r = ms(many.first_list) / ms(single.first_list);
                    ratio(
                        r,
                        format!(
                            "{r:.2}× (initialize alone: {:.2}×)",
                            ms(many.initialize) / ms(single.initialize)
                        ),
                    )
                },
                limit: 1.5,
                at_most: true,
            },
            Ratio {
                target: "warm 20-backend tools/list, backends at 2 s <= 50 ms",
                measured: {
                    let m = ms(self.warm.first_list);
                    ratio(m, format!("{m:.1} ms ({} tools)", self.warm.tools))
                },
                limit: 50.0,
                at_most: true,
            },
            Ratio {
                target: "10,000-tool tools/list from memory <= 20 ms",
                measured: ratio(
                    ms(many.second_list),
                    format!("{:.2} ms ({} tools)", ms(many.second_list), many.tools),
                ),
                limit: 20.0,
                at_most: true,
            },
        ]
    }

    fn ratio_block(&self) -> String {
        let mut lines = vec![vec![
            "target (in-process backend)".to_owned(),
            "measured".to_owned(),
            "".to_owned(),
        ]];
        for r in self.ratios() {
            let (shown, verdict) = match &r.measured {
                Some((value, shown)) => {
                    let met = if r.at_most {
                        *value <= r.limit
                    } else {
                        *value >= r.limit
                    };
                    (
                        shown.clone(),
                        if met { "met" } else { "not met" }.to_owned(),
                    )
                }
                None => ("—".to_owned(), "n/a (peer not measured)".to_owned()),
            };
            lines.push(vec![r.target.to_owned(), shown, verdict]);
        }
        let mut out = String::from("ratios (information only, never a failure):\n");
        if self.machine.profile == "debug" {
            out.push_str("(a debug build: these say nothing about the release binary)\n");
        }
        out.push_str(&align(&lines, 3));
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| match &row.outcome {
                Ok(f) => json!({
                    "peer": row.peer,
                    "backend": row.backend,
                    "startup_ms": f.startup.map(ms),
                    "latency_us": {"p50": us(f.latency.p50), "p90": us(f.latency.p90), "p99": us(f.latency.p99)},
                    "added_p50_us": if row.peer == "direct" { None } else { self.added_p50(f, row.backend) },
                    "throughput_calls_per_s": f.throughput.iter().map(|(k, r)| (k.to_string(), json!(r))).collect::<serde_json::Map<_, _>>(),
                    "cpu_us_per_call": f.cpu_per_call.map(us),
                    "system_cpu_us_per_call": f.system_per_call.map(us),
                    "context_switches_per_call": f.switches_per_call,
                    "threads_lost_during_latency_run": f.lost_threads,
                    "peak_rss_bytes": f.peak_rss,
                    "perf_stat": f.perf,
                    "other_processes_busy_cpus": f.noise,
                }),
                Err(reason) => json!({"peer": row.peer, "backend": row.backend, "skipped": reason}),
            })
            .collect();
        let scale: Vec<Value> = self
            .scale
            .iter()
            .map(|s| {
                json!({
                    "backends": s.backends,
                    "tools": s.tools,
                    "tools_list_bytes": s.list_bytes,
                    "initialize_ms": ms(s.initialize),
                    "first_tools_list_ms": ms(s.first_list),
                    "gateway_cpu_ms_to_first_list": ms(s.gateway_cpu),
                    "bench_cpu_ms_to_first_list": ms(s.backends_cpu),
                    "next_tools_list_ms": ms(s.second_list),
                    "calls": s.call_count,
                    "call_latency_us": {"p50": us(s.calls.p50), "p90": us(s.calls.p90), "p99": us(s.calls.p99)},
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios()
            .into_iter()
            .map(|r| {
                let met = r.measured.as_ref().map(|(v, _)| if r.at_most { *v <= r.limit } else { *v >= r.limit });
                json!({"target": r.target, "value": r.measured.as_ref().map(|m| m.0), "shown": r.measured.map(|m| m.1), "limit": r.limit, "met": met})
            })
            .collect();
        json!({
            "machine": {"nproc": self.machine.nproc, "cpu": self.machine.cpu, "kernel": self.machine.kernel, "profile": self.machine.profile, "load_average_at_start": self.machine.load},
            "quick": self.quick,
            "peers": rows,
            "scale": scale,
            "warm_start": {
                "backends": self.warm.backends,
                "tools": self.warm.tools,
                "backend_delay_ms": ms(SLOW_BACKENDS),
                "initialize_ms": ms(self.warm.initialize),
                "first_tools_list_ms": ms(self.warm.first_list),
            },
            "token_path": {
                "cached_call_us": us(self.token.cached),
                "refresh_call_us": us(self.token.refresh),
                "first_refresh_us": self.token.first_refresh.map(us),
                "refreshes_seen": self.token.refreshes_seen,
                "refreshes_planned": self.token.refreshes_planned,
            },
            "binary": {"bytes": self.binary.bytes, "stripped_bytes": self.binary.stripped},
            "ratios": ratios,
            "wall_s": self.wall.as_secs_f64(),
            "other_processes_busy_cpus": self.other_cpus,
        })
    }

    /// Writes [`Report::json`] to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(&self.json()).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Columns two spaces apart: the first `left` ones left-aligned (names), the others
/// right-aligned (numbers). A row with fewer cells lets its last cell run on (a reason).
fn align(lines: &[Vec<String>], left: usize) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            if i + 1 < line.len() || line.len() == columns {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i + 1 == line.len() && line.len() < columns {
                text.push_str(cell);
            } else if i < left {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            } else {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            }
            text.push_str("  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}
