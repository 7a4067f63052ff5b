//! File-descriptor limits and the errors that mean a limit, not the broker, stopped the run.
//!
//! Every socket costs a descriptor in the generator and one in the broker, and every connection from
//! one source address costs an ephemeral port. When one of these runs out, the run should say which,
//! and how to lift it, instead of printing a bare OS error.

use std::io;

/// `EMFILE` on Linux: this process has no descriptor left.
const EMFILE: i32 = 24;
/// `ENFILE` on Linux: the whole system has no descriptor left.
const ENFILE: i32 = 23;

/// Descriptors kept back for stdio, HTTP connections and the runtime.
pub const RESERVED_FDS: u64 = 64;

/// The soft and hard `RLIMIT_NOFILE` after trying to raise the soft limit to the hard one.
#[derive(Debug, Clone, Copy)]
pub struct NofileLimit {
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit (the ceiling for an unprivileged raise).
    pub hard: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns both.
pub fn raise_nofile() -> NofileLimit {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let (cur, hard) = rlimit::Resource::NOFILE.get().unwrap_or((soft, soft));
    NofileLimit {
        soft: cur.max(soft),
        hard,
    }
}

/// If `err` is a resource limit rather than a broker fault, says which and how to lift it.
pub fn explain_io(err: &io::Error, sources: u8) -> Option<String> {
    if err.raw_os_error() == Some(EMFILE) {
        let lim = raise_nofile();
        return Some(format!(
            "the generator ran out of file descriptors (EMFILE, RLIMIT_NOFILE soft {} / hard {}); \
             raise the hard limit (ulimit -Hn, or LimitNOFILE) or open fewer sockets",
            lim.soft, lim.hard
        ));
    }
    if err.raw_os_error() == Some(ENFILE) {
        return Some(
            "the system ran out of file descriptors (ENFILE); raise fs.file-max or open fewer sockets"
                .to_owned(),
        );
    }
    if err.kind() == io::ErrorKind::AddrNotAvailable || err.kind() == io::ErrorKind::AddrInUse {
        return Some(format!(
            "out of ephemeral ports or source addresses ({err}); spread sockets over more loopback \
             sources with --sources (now {sources}) or widen net.ipv4.ip_local_port_range"
        ));
    }
    None
}
