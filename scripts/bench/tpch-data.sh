# Sourced by scripts/bench-tpch and scripts/bench-distributed (from the project root,
# with $scale set): builds the release binary ($bin), sets up the bench venv ($venv) and
# generates TPC-H at scale factor $scale with tpchgen-cli as Parquet, and Delta tables
# of the same files ($data, with the table names in $tables), kept in the cache for the
# next run.
cache="${QUERN_CACHE:-$HOME/.cache/quern}"
. scripts/bench/quern-bin.sh   # $bin: QUERN_BIN, or the release binary built here

venv="$cache/bench-venv"
requirements=scripts/bench/requirements-tpch.txt
if ! cmp -s "$requirements" "$venv/requirements-tpch.txt" 2>/dev/null; then
    echo "setting up $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements-tpch.txt"
fi

data="$cache/tpch/sf$scale"
tables="lineitem orders customer part partsupp supplier nation region"
if [[ ! -f "$data/parquet/complete" ]]; then
    echo "generating TPC-H SF$scale into $data…"
    rm -rf "$data" && mkdir -p "$data/parquet"
    "$venv/bin/tpchgen-cli" parquet -s "$scale" --output-dir="$data/parquet"
    touch "$data/parquet/complete"
fi
# Each Delta table's one data file is the Parquet file itself (a hard link, or a copy
# across file systems), added to a new log with its statistics by delta-rs'
# `convert_to_deltalake`: the two formats then hold the same bytes in the same row
# groups, and Delta ÷ Parquet measures what the log costs. (Rewritten by
# `write_deltalake` the tables had 1 M-row row groups where tpchgen's have ~100 K,
# and one thread decoded partsupp's single row group: Q2 and Q11 ×1.3 Parquet.)
if [[ ! -f "$data/delta/complete" ]]; then
    rm -rf "$data/delta"
    for t in $tables; do
        mkdir -p "$data/delta/$t"
        ln "$data/parquet/$t.parquet" "$data/delta/$t/" 2>/dev/null \
            || cp "$data/parquet/$t.parquet" "$data/delta/$t/"
    done
    "$venv/bin/python" - "$data" $tables <<'PY'
import sys
from deltalake import convert_to_deltalake
data, tables = sys.argv[1], sys.argv[2:]
for t in tables:
    convert_to_deltalake(f"{data}/delta/{t}")
PY
    touch "$data/delta/complete"
fi

# Writes $work/environments/$1.toml: the TPC-H tables in format $2 (delta or parquet) as
# the source `tpch`, $3 target partitions, and the [engine] lines $4 when given.
tpch_environment() {
    mkdir -p "$work/sql" "$work/environments"
    {
        printf '[warehouse]\nroot = "warehouse-%s"\n\n[engine]\ntarget_partitions = %s\n%s\n[sources.tpch]\n' "$1" "$3" "${4:-}"
        for t in $tables; do
            file="$data/$2/$t"; [[ $2 = parquet ]] && file="$file.parquet"
            printf '%s = { uri = "%s", format = "%s" }\n' "$t" "$file" "$2"
        done
    } > "$work/environments/$1.toml"
}
