//! Transparent huge pages, off while `quern query` starts and opens its tables.
//!
//! mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), and the kernel then
//! zeroes 2 MiB at the first touch of each 2 MiB of an arena. A query's hash tables and
//! buffers gain from that; opening its tables does not: each Delta log replay allocates
//! a few MiB of small objects on the threads that run it, scattered over fresh 2 MiB
//! regions. A count over five TPC-H tables took 23 huge-page faults over Delta (6 over
//! the same tables as Parquet), and zeroing them was 30 % of the command's CPU.
//!
//! So the process starts with huge pages off (`PR_SET_THP_DISABLE`, the process's own
//! switch); `quern query` allows them again once its tables are open and its plan is
//! made, every other command as it starts (before it runs anything, or starts another
//! process, which would inherit the switch). Pages touched while they were off stay
//! small; memory touched afterwards gets huge pages as before. With this, the five-table
//! count took 2 faults and 19–25 ms instead of 28–40 ms, and TPC-H SF1's 22 queries
//! (each a `quern query`, the two builds alternated, medians of 5) took 4 % less time
//! over Delta and 2 % less over Parquet.

use std::sync::atomic::{AtomicBool, Ordering};

/// Turns huge pages off for this process, unless they are off already (the machine's
/// or the user's choice, e.g. `MIMALLOC_ALLOW_THP=0`): then [`allow`] leaves them off.
pub(crate) fn defer() {
    if !thp_disabled() && set_thp_disabled(true) {
        DEFERRED.store(true, Ordering::Relaxed);
    }
}

/// Allows huge pages again if [`defer`] turned them off.
pub(crate) fn allow() {
    if DEFERRED.swap(false, Ordering::Relaxed) {
        set_thp_disabled(false);
    }
}

static DEFERRED: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
fn thp_disabled() -> bool {
    let none: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only; no memory is passed.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, none, none, none, none) == 1 }
}

/// Whether the setting took.
#[cfg(target_os = "linux")]
fn set_thp_disabled(off: bool) -> bool {
    let none: libc::c_ulong = 0;
    let off = libc::c_ulong::from(off);
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, off, none, none, none) == 0 }
}

// Elsewhere there is no per-process switch: huge pages stay as the system has them.
#[cfg(not(target_os = "linux"))]
fn thp_disabled() -> bool {
    true
}

#[cfg(not(target_os = "linux"))]
fn set_thp_disabled(_off: bool) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the setting is the whole process's.
    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_off_until_allowed_and_an_earlier_choice_stays() {
        let initially = thp_disabled();

        assert!(set_thp_disabled(false));
        defer();
        assert!(thp_disabled(), "defer turns huge pages off");
        allow();
        assert!(!thp_disabled(), "allow turns them back on");
        allow();
        assert!(!thp_disabled(), "a second allow changes nothing");

        // Off before quern started (MIMALLOC_ALLOW_THP=0 does that): they stay off.
        assert!(set_thp_disabled(true));
        defer();
        allow();
        assert!(thp_disabled(), "allow leaves an earlier choice alone");

        assert!(set_thp_disabled(initially));
    }
}
