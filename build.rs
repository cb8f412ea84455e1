//! Links the `quern` binary as a position-dependent executable on Linux with glibc.
//!
//! Built as PIE (Rust's default), the binary carries about 400 000 relative relocations
//! (pointers in its static data) that the dynamic loader applies at every start,
//! writing to and so copying ~3 MB of pages: a profile put about half of a
//! `quern query "SELECT 1"` in the loader, which took 22.6 ms as PIE and 14.3 ms
//! without on a 2-core Xeon. Every `quern` process pays it, and a `quern query` per
//! TPC-H query pays it 22 times. Linked with `-no-pie` the addresses are fixed at link
//! time and there is nothing to relocate.
//!
//! The cost is that the binary's own code and data load at a fixed address (shared
//! libraries, the heap and the stacks are still randomized), as Go's default build does
//! on Linux. Only the binary changes: the library, the tests and the benches are
//! compiled and linked as before, so no dependency is rebuilt for it. Set
//! `QUERN_PIE=1` when building to keep a PIE binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=QUERN_PIE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let keep_pie = std::env::var_os("QUERN_PIE").is_some_and(|v| v != "0");
    if os == "linux" && env == "gnu" && !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
