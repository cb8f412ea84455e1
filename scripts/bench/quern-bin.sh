# Sourced by the bench scripts (from the project root): sets `bin`, the absolute path of
# the quern binary they measure. QUERN_BIN names one by its absolute path, for an A/B
# run of two builds (copy the release binary aside, change the code, run the bench with
# each); otherwise it is the release binary, built here with the benches (one feature
# set for every build) in the same target folder as cargo run and scripts/test.
if [ -n "${QUERN_BIN:-}" ]; then
    if [[ "$QUERN_BIN" != /* || ! -x "$QUERN_BIN" ]]; then
        echo "QUERN_BIN=$QUERN_BIN: not the absolute path of an executable file" >&2
        exit 1
    fi
    bin="$(realpath "$QUERN_BIN")"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    cargo bench --no-run --locked --quiet
    bin="$(realpath "$CARGO_TARGET_DIR/release/quern")"
fi
# Measured as a production run has it: without backtraces captured into errors (a
# developer's shell often sets RUST_BACKTRACE; errors that a library builds and then
# handles, as delta-kernel's do, would each capture one).
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
