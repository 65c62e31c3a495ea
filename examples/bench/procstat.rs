//! What a peer costs the machine, read from `/proc` (Linux): CPU time, context switches and
//! peak memory of a process and all its descendants.
//!
//! A peer is a process tree: `node dist/proxy.js` may start helpers, a Python venv's launcher
//! may exec or fork. So every figure is summed over the tree of the child the bench spawned,
//! found by walking the `ppid` of every process in `/proc`.
//!
//! What is read, and what it misses:
//!
//! - **CPU time**: `utime + stime + cutime + cstime` of `/proc/<pid>/stat` (fields 14–17), in
//!   clock ticks (`sysconf(_SC_CLK_TCK)`, 100 Hz on Linux: 10 ms resolution, so runs are long
//!   enough to span hundreds of ticks). The process-level line includes threads that have
//!   already exited, and `cutime`/`cstime` the children it has reaped.
//! - **Context switches**: `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` of
//!   `/proc/<pid>/task/<tid>/status`, summed over threads. The kernel keeps these per thread
//!   (the process-level `status` shows only the main thread's), and a thread's counters vanish
//!   with it. So a thread that exits between two samples takes its switches along: the delta
//!   counts the threads alive at the end, and says how many of those seen at the start were
//!   gone ([`Delta::lost_threads`]) so that an undercount is visible. Tokio's workers and
//!   node's and CPython's threads live as long as the process, so this is rarely non-zero.
//! - **Peak RSS**: `VmHWM` of `/proc/<pid>/status` (the high-water mark of resident memory),
//!   summed over the tree: an upper bound of the tree's peak, exact for one process.
//! - **Noise**: how many CPUs other processes kept busy during the bench, from the machine's
//!   busy time in `/proc/stat` minus the bench's own (children it reaped included): a figure
//!   far from 0 says the table was measured on a shared, busy machine.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::Duration,
};

/// One reading of a process tree's counters.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// CPU time in clock ticks, summed over the tree.
    cpu_ticks: u64,
    /// The part of it spent in the kernel (`stime + cstime`).
    system_ticks: u64,
    /// Context switches of each live thread, by `(pid, tid)`.
    switches: BTreeMap<(u32, u32), u64>,
}

/// What a tree used between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    /// CPU time (user + system).
    pub cpu: Duration,
    /// The system part of it: the kernel working for the tree (syscalls, the network stack).
    pub system: Duration,
    /// Voluntary + involuntary context switches of the threads alive at the end.
    pub switches: u64,
    /// Threads alive at the first sample and gone at the second: their switches since the
    /// first sample are missing from [`Delta::switches`].
    pub lost_threads: usize,
}

/// The pid and every descendant of it, `root` first. Empty when `/proc` cannot be read.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                parents.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        if let Some(children) = parents.get(&found[next]) {
            found.extend(children);
        }
        next += 1;
    }
    found
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, is index 0).
/// The name is in parentheses and may itself contain spaces and parentheses, hence the last `)`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &line[line.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `(utime + stime + cutime + cstime, stime + cstime)` (fields 14–17) of one process, in
/// ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    stat_fields(pid)
        .and_then(|fields| {
            let times: Vec<u64> = fields
                .get(11..15)?
                .iter()
                .map(|f| f.parse::<u64>().unwrap_or(0))
                .collect();
            Some((times.iter().sum(), times[1] + times[3]))
        })
        .unwrap_or((0, 0))
}

/// A numeric `Key:\tvalue [kB]` line of a `status` file.
fn status_value(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Reads the counters of `root`'s tree now.
pub fn sample(root: u32) -> Sample {
    let mut sample = Sample::default();
    for pid in tree(root) {
        let (cpu, system) = cpu_ticks(pid);
        sample.cpu_ticks += cpu;
        sample.system_ticks += system;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let switches = status_value(&status, "voluntary_ctxt_switches").unwrap_or(0)
                + status_value(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
            sample.switches.insert((pid, tid), switches);
        }
    }
    sample
}

/// Clock ticks per second of the CPU times in `/proc`.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

impl Sample {
    /// What was used from `self` to `later`.
    pub fn until(&self, later: &Sample) -> Delta {
        let duration =
            |ticks: u64| Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64);
        let cpu = duration(later.cpu_ticks.saturating_sub(self.cpu_ticks));
        let system = duration(later.system_ticks.saturating_sub(self.system_ticks));
        let switches = later
            .switches
            .iter()
            .map(|(thread, &end)| end.saturating_sub(*self.switches.get(thread).unwrap_or(&0)))
            .sum();
        let ended: BTreeSet<_> = self
            .switches
            .keys()
            .filter(|thread| !later.switches.contains_key(thread))
            .collect();
        Delta {
            cpu,
            system,
            switches,
            lost_threads: ended.len(),
        }
    }
}

/// Peak resident memory of `root`'s tree in bytes (`VmHWM`, summed over its processes).
pub fn peak_rss(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| status_value(&status, "VmHWM"))
        .sum::<u64>()
        * 1024
}

/// CPU time the whole machine has spent busy (everything but idle and iowait) since boot,
/// from the first line of `/proc/stat`.
pub fn machine_busy() -> Duration {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .map(|fields| {
            fields
                .split_whitespace()
                .filter_map(|f| f.parse::<u64>().ok())
                .enumerate()
                // user nice system idle iowait irq softirq steal: skip idle (3) and iowait (4).
                .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
                .map(|(_, t)| t)
                .sum()
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// Watches how busy the rest of the machine is while the bench runs: the machine's busy time
/// minus the bench's own (its process and every child it has started and reaped).
pub struct Noise {
    started: std::time::Instant,
    machine: Duration,
    own: Sample,
}

impl Noise {
    /// Starts watching.
    pub fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
            machine: machine_busy(),
            own: sample(std::process::id()),
        }
    }

    /// CPUs kept busy by other processes on average since [`Noise::start`].
    pub fn other_cpus(&self) -> f64 {
        let machine = machine_busy().saturating_sub(self.machine);
        let own = self.own.until(&sample(std::process::id())).cpu;
        machine.saturating_sub(own).as_secs_f64() / self.started.elapsed().as_secs_f64()
    }
}
