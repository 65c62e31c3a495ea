//! stdin and stdout as the event loop's own file descriptors.
//!
//! `tokio::io::stdin()` and `stdout()` do every read and write on the blocking thread pool: a
//! relayed call costs two hand-offs to a pool thread and back, each a futex wake-up and a
//! context switch, which profiling showed to be a large share of the proxy's cost per call.
//! Desktop clients start us with pipes (Python's `subprocess`) or socket pairs (Node's
//! `child_process`, so Electron apps), and both can be polled by the reactor like a network
//! socket once they are non-blocking. Anything else — a terminal, a regular file, `/dev/null`
//! — keeps tokio's blocking-pool streams, which work for every kind of file.
//!
//! The descriptors are duplicated, so fd 0 and 1 stay open (and nothing else can take their
//! numbers) until the process exits. `O_NONBLOCK` belongs to the open file description, which
//! a pipe or socket pair made for this process shares with nobody who reads or writes it.

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// What the proxy reads requests from.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// What the proxy writes responses to.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// stdin and stdout, polled by the reactor where they are pipes or sockets. Must be called
/// inside the runtime.
pub fn open() -> (Reader, Writer) {
    #[cfg(unix)]
    {
        (
            unix::reader().unwrap_or_else(|| Box::pin(tokio::io::stdin())),
            unix::writer().unwrap_or_else(|| Box::pin(tokio::io::stdout())),
        )
    }
    #[cfg(not(unix))]
    {
        (Box::pin(tokio::io::stdin()), Box::pin(tokio::io::stdout()))
    }
}

#[cfg(unix)]
mod unix {
    use std::{
        fs::File,
        os::{
            fd::{AsFd, BorrowedFd, OwnedFd},
            unix::fs::FileTypeExt,
        },
    };

    use tokio::net::{UnixStream, unix::pipe};

    use super::{Reader, Writer};

    enum Kind {
        Pipe,
        Socket,
    }

    /// A duplicate of `fd` and what it is, when the reactor can poll it.
    fn pollable(fd: BorrowedFd<'_>) -> Option<(OwnedFd, Kind)> {
        let fd = fd.try_clone_to_owned().ok()?;
        let file = File::from(fd);
        let kind = file.metadata().ok()?.file_type();
        let kind = if kind.is_fifo() {
            Kind::Pipe
        } else if kind.is_socket() {
            Kind::Socket
        } else {
            return None;
        };
        Some((OwnedFd::from(file), kind))
    }

    fn socket(fd: OwnedFd) -> Option<UnixStream> {
        let socket = std::os::unix::net::UnixStream::from(fd);
        socket.set_nonblocking(true).ok()?;
        UnixStream::from_std(socket).ok()
    }

    pub(super) fn reader() -> Option<Reader> {
        let (fd, kind) = pollable(std::io::stdin().as_fd())?;
        Some(match kind {
            Kind::Pipe => Box::pin(pipe::Receiver::from_owned_fd(fd).ok()?),
            Kind::Socket => Box::pin(socket(fd)?),
        })
    }

    pub(super) fn writer() -> Option<Writer> {
        let (fd, kind) = pollable(std::io::stdout().as_fd())?;
        Some(match kind {
            Kind::Pipe => Box::pin(pipe::Sender::from_owned_fd(fd).ok()?),
            Kind::Socket => Box::pin(socket(fd)?),
        })
    }
}
