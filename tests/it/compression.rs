//! `[engine] compression`: the Parquet codec of the files quern writes. Snappy by
//! default (what Spark and DuckDB write), another codec when the environment names one,
//! and a codec that does not parse is a config error naming the file and key. And
//! `[engine.datafusion]`: DataFusion's own settings, passed to every session, checked
//! when the environment loads.

use std::path::{Path, PathBuf};

use quern::datafusion::parquet::basic::Compression;
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

/// The codecs of every column chunk of every Parquet file under `dir`.
fn codecs(dir: &Path) -> Vec<Compression> {
    let files = parquet_files(dir);
    assert!(
        !files.is_empty(),
        "no Parquet files under {}",
        dir.display()
    );
    let mut out = Vec::new();
    for file in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for group in reader.metadata().row_groups() {
            out.extend(group.columns().iter().map(|c| c.compression()));
        }
    }
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
