//! The memory every query of an engine shares: one pool of `[engine] memory_limit`
//! bytes, fair to the operators that can spill (DataFusion's `FairSpillPool`), and one
//! disk manager for their spill files (the OS temp folder, or none when
//! `engine.spill = false`). A query that needs more than the pool gets — even after
//! spilling — fails with an error naming the limit, the environment's file and what
//! to change.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::disk_manager::{DiskManager, DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::spill_file::{SpillFile, TempFileFactory};

use crate::config::{default_memory_limit, format_bytes, Environment};
use crate::error::{Error, Result};

/// An engine's memory pool and spill disk, shared by the sessions it makes.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    pool: Arc<dyn MemoryPool>,
    disk: Arc<DiskManager>,
}

impl Memory {
    /// The pool and disk `env`'s `[engine]` asks for.
    pub(crate) fn for_environment(env: &Environment) -> Result<Memory> {
        let set = env.engine.memory_limit_bytes();
        let limit = set.unwrap_or_else(default_memory_limit);
        let spill = env.engine.spill.unwrap_or(true);
        let hint = hint(env, limit, set.is_some(), spill);
        // With spilling off, the first spill an operator attempts is the error (some,
        // such as a repartition's spill pool, ask for a file without asking first
        // whether they may, and would fail with DataFusion's bare "DiskManager is
        // disabled").
        let mode = match spill {
            true => DiskManagerMode::OsTmpDirectory,
            false => DiskManagerMode::Custom(Arc::new(NoSpill { hint: hint.clone() })),
        };
        let disk = DiskManagerBuilder::default()
            .with_mode(mode)
            .build()
            .map_err(|e| Error::session("setting up the folder queries spill to", e))?;
        let size = usize::try_from(limit).unwrap_or(usize::MAX);
        let tracked = TrackConsumersPool::new(
            FairSpillPool::new(size),
            NonZeroUsize::MIN.saturating_add(4),
        );
        let memory = Memory {
            pool: Arc::new(NamedPool {
                inner: tracked,
                hint,
            }),
            disk: Arc::new(disk),
        };
        // Sessions make their runtimes infallibly once this one is made.
        memory.runtime()?;
        Ok(memory)
    }

    /// A runtime for one session: this pool and disk, the session's own caches and
    /// object stores, local files memory-mapped.
    pub(crate) fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let mut builder = RuntimeEnvBuilder::new().with_memory_pool(self.pool.clone());
        builder.disk_manager = Some(self.disk.clone());
        let runtime = builder
            .build_arc()
            .map_err(|e| Error::session("setting up a session's memory", e))?;
        // Local tables are read through memory maps (see catalog::local_files).
        if let Ok(local) = url::Url::parse("file://") {
            runtime.register_object_store(&local, crate::catalog::local_files());
        }
        Ok(runtime)
    }
}

/// What an allocation past the limit adds to DataFusion's message.
fn hint(env: &Environment, limit: u64, set: bool, spill: bool) -> String {
    let file = env.file.display();
    let limit = format_bytes(limit);
    let whence = match set {
        true => format!("engine.memory_limit = \"{limit}\" in {file}"),
        false => format!(
            "the default engine.memory_limit ({limit}, three quarters of this machine's memory) of {file}"
        ),
    };
    match spill {
        true => format!("the query needs more memory than {whence}, even spilling to disk; raise memory_limit, or lower engine.target_partitions"),
        false => format!("the query needs more memory than {whence} and spilling is off (engine.spill = false); raise memory_limit, or let it spill"),
    }
}

/// The spill files of `engine.spill = false`: none, an error saying why.
struct NoSpill {
    hint: String,
}

impl TempFileFactory for NoSpill {
    fn create_temp_file(&self, description: &str) -> DfResult<Arc<dyn SpillFile>> {
        Err(DataFusionError::ResourcesExhausted(format!(
            "{}: memory ran out while {description}",
            self.hint
        )))
    }
}

/// A pool whose allocation errors say which limit they hit and what to do.
#[derive(Debug)]
struct NamedPool {
    inner: TrackConsumersPool<FairSpillPool>,
    hint: String,
}

impl fmt::Display for NamedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl MemoryPool for NamedPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner.try_grow(reservation, additional).map_err(|e| {
            let message = match e.find_root() {
                DataFusionError::ResourcesExhausted(m) => m.clone(),
                other => other.to_string(),
            };
            DataFusionError::ResourcesExhausted(format!("{}: {message}", self.hint))
        })
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
