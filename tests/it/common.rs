//! Helpers: a temporary copy of the example project, running the real binary, and
//! reading Delta table versions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quern::{Engine, Project};

/// The repository's own project (sql/ and environments/): the checkout `cargo test`
/// runs in, read at run time. Two checkouts sharing one CARGO_TARGET_DIR (CI's clone and
/// a working copy) reuse each other's test binary when no source changed, and the path
/// compiled in would then point at the other checkout, or at one since deleted.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A temporary copy of the example project (without any warehouse).
pub struct TempProject {
    pub dir: tempfile::TempDir,
}

impl TempProject {
    pub fn new() -> Self {
        // Not a hidden folder: pyarrow skips paths with a component starting with `.`.
        let dir = tempfile::Builder::new()
            .prefix("quern-test-")
            .tempdir()
            .expect("temp dir");
        for sub in ["sql", "environments", "models"] {
            copy_dir(&repo_root().join(sub), &dir.path().join(sub));
        }
        TempProject { dir }
    }

    /// A project with one extra task `dim` in the events pipeline, configured by
    /// `toml` (its `pipeline.toml` lines) and written as `sql`.
    pub fn with_task(toml: &str, sql: &str) -> Self {
        let project = TempProject::new();
        project.write(
            "sql/events/pipeline.toml",
            &format!("{}\n{toml}\n", project.read("sql/events/pipeline.toml")),
        );
        project.write("sql/events/dim.sql", sql);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the Python `script` (with the test venv's deltalake) on the folder of the
    /// events pipeline's `dim` table, its one argument: a table another writer made.
    pub fn python_writes_dim(&self, script: &str) {
        let made = Command::new(python())
            .args(["-c", script])
            .arg(self.path().join("warehouse/events/dim"))
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("python runs");
        assert!(made.status.success(), "{}", stderr(&made));
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    pub fn engine(&self, env: &str) -> Engine {
        let project = Project::load(self.path()).expect("project loads");
        Engine::builder(project)
            .with_environment(env)
            .build()
            .expect("engine builds")
    }

    /// The real `quern` binary, set up to run in this project.
    pub fn command(&self, args: &[&str]) -> Command {
        command_at(self.path(), args)
    }

    /// Runs the real `quern` binary in this project.
    pub fn quern(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("quern runs")
    }

    /// `quern query <sql> --format csv`'s output.
    pub fn query_csv(&self, sql: &str) -> String {
        stdout(&self.quern(&["query", sql, "--format", "csv"]))
    }

    /// The sorted file names in folder `rel` of the project.
    pub fn read_dir_state(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path().join(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every task table's Delta log files under the local warehouse (not the run log
    /// in `_quern/`): a fingerprint that changes with any commit.
    pub fn warehouse_state(&self) -> Vec<String> {
        let mut files = Vec::new();
        let root = self.path().join("warehouse");
        collect_logs(&root, &root, &mut files);
        files.sort();
        files
    }
}

/// The real `quern` binary, set up to run in the project folder `dir`.
pub fn command_at(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quern"));
    command
        .arg("--project")
        .arg(dir)
        .args(args)
        .env_remove("QUERN_ENV");
    command
}

/// Runs the real `quern` binary in the project folder `dir`.
pub fn quern_at(dir: &Path, args: &[&str]) -> Output {
    command_at(dir, args).output().expect("quern runs")
}

fn collect_logs(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path != root.join("_quern") {
            collect_logs(root, &path, out);
        } else if path.parent().is_some_and(|p| p.ends_with("_delta_log")) {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python interpreter with the `deltalake` package (installed by scripts/test).
pub fn python() -> String {
    std::env::var("QUERN_PYTHON").unwrap_or_else(|_| "python3".into())
}
