//! `[engine] compression`: the Parquet codec of the files quern writes. Snappy by
//! default (what Spark and DuckDB write), another codec when the environment names one,
//! and a codec that does not parse is a config error naming the file and key; row
//! groups of 256 Ki rows. And
//! `[engine.datafusion]`: DataFusion's own settings, passed to every session, checked
//! when the environment loads.

use std::path::{Path, PathBuf};

use quern::datafusion::parquet::basic::Compression;
use quern::datafusion::parquet::file::metadata::RowGroupMetaData;
use quern::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

use crate::common::{stderr, TempProject};

/// Every Parquet file under `dir`.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out
}

/// The row groups of every Parquet file under `dir`, of which there is at least one.
fn row_groups(dir: &Path) -> Vec<RowGroupMetaData> {
    let files = parquet_files(dir);
    assert!(
        !files.is_empty(),
        "no Parquet files under {}",
        dir.display()
    );
    let mut out = Vec::new();
    for file in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        out.extend(reader.metadata().row_groups().iter().cloned());
    }
    out
}

/// The codecs of every column chunk of every Parquet file under `dir`.
fn codecs(dir: &Path) -> Vec<Compression> {
    let mut out: Vec<_> = (row_groups(dir).iter())
        .flat_map(|g| g.columns().iter().map(|c| c.compression()))
        .collect();
    out.sort_by_key(|c| format!("{c:?}"));
    out.dedup();
    out
}

#[test]
fn delta_tables_are_written_with_the_environments_codec() {
    let project = TempProject::new();
    let local = project.read("environments/local.toml");
    project.write(
        "environments/small.toml",
        &local
            .replace("root = \"warehouse\"", "root = \"warehouse-small\"")
            .replace("[engine]\n", "[engine]\ncompression = \"ZSTD(9)\"\n"),
    );
    for env in ["local", "small"] {
        let out = project.quern(&["--env", env, "run", "events", "--ds", "2024-03-01"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let local = project.path().join("warehouse");
    assert_eq!(codecs(&local), vec![Compression::SNAPPY]);
    let small = project.path().join("warehouse-small");
    // A file names its codec, not the level it was written at.
    assert!(
        matches!(codecs(&small)[..], [Compression::ZSTD(_)]),
        "{:?}",
        codecs(&small)
    );
}

/// The rows of each row group of every Parquet file under `dir`, sorted.
fn row_group_rows(dir: &Path) -> Vec<i64> {
    let mut out: Vec<_> = row_groups(dir).iter().map(|g| g.num_rows()).collect();
    out.sort_unstable();
    out
}

#[test]
fn written_row_groups_hold_256_ki_rows_but_partitioned_unless_the_environment_says_otherwise() {
    let project = TempProject::new();
    project.write(
        "sql/wide/ids.sql",
        "SELECT value AS id, value * 2 AS twice FROM range(0, 600000)",
    );
    project.write(
        "sql/wide/by_day.sql",
        "SELECT value AS id, value % 2 AS day FROM range(0, 600000)",
    );
    project.write(
        "sql/wide/pipeline.toml",
        "[tasks.ids]\nmaterialized = \"table\"\n\n\
         [tasks.by_day]\nmaterialized = \"partition\"\npartition_by = [\"day\"]\n",
    );
    let local = project.read("environments/local.toml");
    // 262144 is quern's own size, set explicitly: partitioned tables take it too.
    for (env, rows) in [("tuned", 200_000), ("explicit", 262_144)] {
        project.write(
            &format!("environments/{env}.toml"),
            &format!(
                "{}\n[engine.datafusion]\n\"execution.parquet.max_row_group_size\" = {rows}\n",
                local.replace(
                    "root = \"warehouse\"",
                    &format!("root = \"warehouse-{env}\"")
                )
            ),
        );
    }
    for env in ["local", "tuned", "explicit"] {
        let out = project.quern(&["--env", env, "run", "wide"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let local = row_group_rows(&project.path().join("warehouse/wide/ids"));
    assert_eq!(local.iter().sum::<i64>(), 600_000, "{local:?}");
    assert!(local.iter().all(|&n| n <= 256 * 1024), "{local:?}");
    assert!(local.len() >= 3, "{local:?}");
    // A partitioned table's files keep DataFusion's 1 Mi rows: every partition value
    // has a file open, and smaller row groups raised the peak memory of such writes.
    let by_day = row_group_rows(&project.path().join("warehouse/wide/by_day"));
    assert_eq!(by_day, vec![300_000, 300_000]);
    // `[engine.datafusion]` comes after quern's own writer settings.
    let tuned = row_group_rows(&project.path().join("warehouse-tuned/wide/ids"));
    assert_eq!(tuned.iter().sum::<i64>(), 600_000, "{tuned:?}");
    assert!(tuned.iter().all(|&n| n <= 200_000), "{tuned:?}");
    assert!(tuned.contains(&200_000), "{tuned:?}");
    let tuned = row_group_rows(&project.path().join("warehouse-tuned/wide/by_day"));
    assert_eq!(tuned, vec![100_000, 100_000, 200_000, 200_000]);
    let explicit = row_group_rows(&project.path().join("warehouse-explicit/wide/by_day"));
    assert_eq!(explicit, vec![37_856, 37_856, 262_144, 262_144]);
}

#[test]
fn a_codec_that_does_not_parse_is_a_config_error_naming_the_file_and_key() {
    let project = TempProject::new();
    for (codec, says) in [
        ("\"zip\"", "`zip` is not a Parquet codec quern can write: Unknown or unsupported parquet compression"),
        ("\"zstd\"", "requires specifying a level such as zstd(4)"),
        ("\"zstd(99)\"", "`zstd(99)` is not a Parquet codec quern can write"),
        ("\"snappy(2)\"", "`snappy(2)` is not a Parquet codec quern can write"),
    ] {
        let engine = format!("[engine]\ncompression = {codec}");
        assert_bad_engine_setting(&project, &engine, "engine.compression", says);
    }
}

#[test]
fn datafusion_settings_reach_the_session_and_a_bad_one_is_a_config_error() {
    let project = TempProject::new();
    let local = project.read("environments/local.toml");
    project.write(
        "environments/tuned.toml",
        &format!(
            "{}\n[engine.datafusion]\n\"execution.parquet.pushdown_filters\" = true\n\
             \"datafusion.execution.batch_size\" = 1024\n",
            local.replace("root = \"warehouse\"", "root = \"warehouse-tuned\"")
        ),
    );
    let out = project.quern(&[
        "--env",
        "tuned",
        "query",
        "SELECT name, value FROM information_schema.df_settings \
         WHERE name IN ('datafusion.execution.parquet.pushdown_filters', 'datafusion.execution.batch_size') \
         ORDER BY name",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<_> = shown
        .lines()
        .filter(|l| l.contains("datafusion."))
        .collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(
        lines[0].contains("batch_size") && lines[0].contains("1024"),
        "{shown}"
    );
    assert!(
        lines[1].contains("pushdown_filters") && lines[1].contains("true"),
        "{shown}"
    );

    for (setting, says) in [
        (
            "\"execution.no_such_setting\" = 1",
            "datafusion.execution.no_such_setting",
        ),
        (
            "\"execution.batch_size\" = \"many\"",
            "`datafusion.execution.batch_size` = many",
        ),
        (
            "\"execution.batch_size\" = [1]",
            "give a string, a number or a boolean",
        ),
        (
            "\"execution.parquet.max_row_group_size\" = 0",
            "a row group holds at least one row",
        ),
    ] {
        let engine = format!("[engine.datafusion]\n{setting}");
        assert_bad_engine_setting(&project, &engine, "engine.datafusion", says);
    }
}

/// A run on an environment whose `[engine…]` table is `engine` fails as a config
/// error naming the file and `key` and saying `says`, with nothing written.
pub(crate) fn assert_bad_engine_setting(
    project: &TempProject,
    engine: &str,
    key: &str,
    says: &str,
) {
    project.write(
        "environments/bad.toml",
        &format!("[warehouse]\nroot = \"warehouse-bad\"\n\n{engine}\n"),
    );
    let out = project.quern(&["--env", "bad", "run", "events", "--ds", "2024-03-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("environments/bad.toml: key `{key}`")),
        "{err}"
    );
    assert!(err.contains(says), "{err}");
    assert!(
        !project.path().join("warehouse-bad").exists(),
        "{engine} wrote"
    );
}
