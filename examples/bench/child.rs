//! Child processes that never outlive the bench.
//!
//! Every program the bench starts (a proxy under test, `server-everything`) runs in a process
//! group of its own, led by the child: `node` and Python may start helpers, and a signal to the
//! group reaches them too. [`Guarded`] ends the group when it is dropped, so an error (`?`), a
//! panic or Ctrl-C (the bench turns it into an error, see `main`) stops everything it started;
//! [`Guarded::stop`] is the orderly way: stdin closed first, then SIGTERM, then SIGKILL.

use std::{os::unix::process::CommandExt as _, process::ExitStatus, time::Duration};

use tokio::process::{Child, Command};

/// A spawned child and its process group, killed on drop.
pub struct Guarded {
    /// The child, for its pipes and its exit status.
    pub child: Child,
    pid: u32,
    stopped: bool,
}

impl Guarded {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Self, String> {
        cmd.as_std_mut().process_group(0);
        cmd.kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {what} ({:?}): {e}",
                cmd.as_std().get_program()
            )
        })?;
        let pid = child
            .id()
            .ok_or_else(|| format!("{what} exited before it could be watched"))?;
        Ok(Self {
            child,
            pid,
            stopped: false,
        })
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits up to `grace` for the child to exit by itself (after its stdin was closed, say),
    /// then sends SIGTERM, then SIGKILL; every straggler of the group is killed at the end.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut status = tokio::time::timeout(grace, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        if status.is_none() {
            self.signal(libc::SIGTERM);
            status = tokio::time::timeout(Duration::from_secs(2), self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.signal(libc::SIGKILL);
        if status.is_none() {
            status = self.child.wait().await.ok();
        }
        self.stopped = true;
        status
    }

    /// Sends SIGINT to the group, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    fn signal(&self, signal: libc::c_int) {
        let Ok(group) = libc::pid_t::try_from(self.pid) else {
            return;
        };
        // SAFETY: kill(2) on a process group this bench created; ESRCH (gone) is fine.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.stopped {
            self.signal(libc::SIGKILL);
        }
    }
}
