//! How the server's process sets up glibc's allocator: small per-thread
//! caches, so that thousands of idle session threads do not each keep a
//! cache of freed memory.
//!
//! glibc gives every thread a cache (`tcache`) of up to 7 freed chunks per
//! size up to 1,032 bytes. A session thread frees much of what its login
//! allocated (the TLS handshake's pieces, SQLite's, JSON's) and then
//! sleeps, often for hours, with its cache full: measured with
//! `malloc_stats()` on a server holding 5,000 idle sessions, the arenas'
//! "in use" bytes (which count cached chunks) were 208 MB, about 40 KiB per
//! session, of which about 22 KiB was such cached free memory. Only chunks
//! of up to 64 bytes are now cached per thread (`glibc.malloc.tcache_max=64`,
//! a glibc tunable): `confab-bench idle` went from 48 to 26 KiB per session,
//! at the price of ~10% more server CPU per new connection (the handshake's
//! mid-sized allocations go through the shared arenas). Chat traffic did
//! not change measurably (docs/BENCHMARKS.md).
//!
//! Tunables are read by the dynamic loader when a process starts, so the
//! server sets `GLIBC_TUNABLES` and replaces itself with a fresh copy of its
//! program (`exec`: same process id, arguments, descriptors) before it does
//! anything else. An operator who sets any `glibc.malloc.tcache` tunable
//! keeps theirs; if the program cannot be executed again, the server runs
//! with glibc's defaults and says so.

use std::ffi::OsString;

/// The tunable the server runs with, as `GLIBC_TUNABLES` spells it.
pub const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_max=64";

/// What [`tune`] found.
#[derive(Debug)]
pub enum Tuning {
    /// The allocator was already set up (by an earlier `exec` of this
    /// function, or by the operator).
    AlreadySet,
    /// Running the program again failed; the process goes on untuned.
    ExecFailed(std::io::Error),
}

/// The `GLIBC_TUNABLES` value to run with, given the current one; `None`
/// when it already sets a tcache tunable (ours, or the operator's).
pub fn tunables_with_small_tcache(current: Option<&str>) -> Option<String> {
    match current {
        Some(cur) if cur.split(':').any(|t| t.starts_with("glibc.malloc.tcache")) => None,
        Some(cur) if !cur.is_empty() => Some(format!("{cur}:{TCACHE_TUNABLE}")),
        _ => Some(TCACHE_TUNABLE.to_owned()),
    }
}

/// Makes sure the process runs with a small per-thread allocator cache:
/// if `GLIBC_TUNABLES` does not set one yet, sets it and executes this
/// program again with the same arguments (returning only on failure).
/// Call it first thing in `main`, before any thread starts.
pub fn tune() -> Tuning {
    use std::os::unix::process::CommandExt;
    let current = std::env::var_os("GLIBC_TUNABLES");
    let current = current.as_ref().map(|v| v.to_string_lossy().into_owned());
    let Some(tunables) = tunables_with_small_tcache(current.as_deref()) else {
        return Tuning::AlreadySet;
    };
    // /proc/self/exe: this very program, even if its path was relative or
    // has been replaced on disk since.
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(std::env::args_os().next().unwrap_or_default())
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    Tuning::ExecFailed(err)
}

/// For the start-up log: the tunables the process runs with.
pub fn describe() -> String {
    match std::env::var_os("GLIBC_TUNABLES") {
        Some(v) => format!("allocator: GLIBC_TUNABLES={}", v.to_string_lossy()),
        None => "allocator: glibc's defaults".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_added_once_and_the_operators_own_is_kept() {
        assert_eq!(
            tunables_with_small_tcache(None).as_deref(),
            Some(TCACHE_TUNABLE)
        );
        assert_eq!(
            tunables_with_small_tcache(Some("")).as_deref(),
            Some(TCACHE_TUNABLE)
        );
        assert_eq!(
            tunables_with_small_tcache(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_max=64")
        );
        assert_eq!(tunables_with_small_tcache(Some(TCACHE_TUNABLE)), None);
        assert_eq!(
            tunables_with_small_tcache(Some(
                "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
            )),
            None
        );
    }
}
