//! The `quern` command: parse arguments, call the library, map errors to exit codes
//! (0 success, 1 pipeline or data error, 2 usage error).

mod cli;
mod huge_pages;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: DataFusion's operators make many
/// short-lived allocations from every thread (TPC-H SF1 over Delta: see the README's
/// benchmarks), which glibc's malloc serves with more locking and fragmentation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its Rust bindings do not name
/// it): how many milliseconds freed memory stays committed before it is returned.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS after 300 ms rather than mimalloc 3's 1 s: a
/// `partition` write frees each file's buffers as it closes them, and the events
/// repartition of 10 M rows (scripts/bench-repartition) peaked at 505-509 MiB with 1 s.
/// Memory returned too soon is faulted in and zeroed again when the next buffer takes
/// it: on 2 cores, scoring 10 M rows Delta → Delta (scripts/bench-scoring) took 225
/// huge-page faults a run at 100 ms and 145 at 300 ms, and the repartition ran in
/// 2.35-2.67 s with 455-462 MiB at 300 ms against 2.86-2.89 s with 429-433 MiB at
/// 100 ms. TPC-H queries took as long at 100 ms as at 1 s, 5-10 % longer at 10 ms and
/// 15 % longer at 0. A `MIMALLOC_PURGE_DELAY` in the environment (which mimalloc reads)
/// rules.
fn return_freed_memory_sooner() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets an integer option of the allocator; mimalloc reads its options
    // atomically, and no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 300) };
}

/// When a file's write fails (a full disk, a file size limit, a store that refuses),
/// delta-rs aborts its upload and catches the panic object_store's `BufWriter::abort`
/// raises on purpose when the upload had already begun completing ("Already shut
/// down"): the task then fails with the write's own error and nothing is committed.
/// The default panic hook would first print that caught panic and its backtrace, as if
/// quern had crashed; this hook leaves it to the debug log and hands every other panic
/// to the default hook.
fn quiet_caught_upload_aborts() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let aborted_upload = info.payload_as_str() == Some("Already shut down")
            && info.location().is_some_and(|at| {
                at.file().contains("object_store") && at.file().ends_with("buffered.rs")
            });
        if aborted_upload {
            tracing::debug!("an upload that had begun completing could not be aborted (caught)");
            return;
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    return_freed_memory_sooner();
    // Until the command's tables are open: see `huge_pages`.
    huge_pages::defer();
    quiet_caught_upload_aborts();
    let args = cli::Cli::parse();
    // A reader that stops early (`quern query … | head`) ends quern as it ends other
    // Unix tools, quietly by SIGPIPE, rather than with a "Broken pipe" error and exit 1.
    // Tables are safe: a write commits atomically or not at all. Not for the cluster
    // roles: a peer closing a connection must not end a scheduler or an executor.
    if !args.is_cluster_role() {
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The cluster roles run for long and say what they do: at `info` by default.
    let default_log = args.is_cluster_role().then_some("info");
    if let Err(message) = log_to_stderr(default_log) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::execute(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in quern::distinct_causes(err.as_ref()) {
                eprintln!("  caused by: {cause}");
            }
            // The exit code follows the kind of the library's error.
            let usage = err
                .chain()
                .find_map(|e| e.downcast_ref::<quern::Error>())
                .is_some_and(|e| e.kind() == quern::ErrorKind::Usage);
            let code = if usage { 2 } else { 1 };
            if json {
                cli::emit_failure(&err, code);
            }
            ExitCode::from(code)
        }
    }
}

/// With `QUERN_LOG` set (`debug`, `quern=debug,deltalake=info`: a level, or targets
/// with levels), quern's and its libraries' log events go to stderr: which write path
/// a `partition` task took, delta-rs' commits, DataFusion's planning. Without it,
/// nothing is logged, unless `default` gives a filter.
fn log_to_stderr(default: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let Some(spec) = std::env::var("QUERN_LOG")
        .ok()
        .or_else(|| default.map(str::to_string))
    else {
        return Ok(());
    };
    let filter: tracing_subscriber::filter::Targets = spec.parse().map_err(|e| {
        format!(
            "QUERN_LOG={spec:?} is not a log filter ({e}); set a level (QUERN_LOG=debug) \
             or targets with levels (QUERN_LOG=quern=debug,deltalake=info)"
        )
    })?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init()
        .map_err(|e| format!("cannot start logging: {e}"))
}
