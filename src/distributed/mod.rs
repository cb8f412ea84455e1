//! Distributed runs on Apache DataFusion Ballista: the same plans, executed by a
//! cluster of `quern executor` processes that a `quern scheduler` coordinates.
//!
//! The client plans every query as in an embedded run (quern's session, its Delta
//! snapshot scans, its functions), then sends each part of the physical plan that
//! reads files and that other processes can rebuild to the scheduler, which cuts it
//! into stages at its shuffles and runs them on the executors. What stays on the
//! client: rendering, planning, expectations, metrics, the run log, alerts and every
//! Delta commit (a task's result streams back and is written as in an embedded run).
//!
//! The modules, in the one direction their imports go: `roles` runs the scheduler
//! and the executor with quern's functions, stores and codec; `remote` is the
//! client's planner and the plan node standing for a part run on the cluster; both use
//! `codec`, which sends model functions as descriptors and Spark functions by
//! dialect.

mod codec;
mod remote;
mod roles;

pub(crate) use remote::{Cluster, DistributedPlanner};
pub(crate) use roles::serve_executor;
pub use roles::{serve_scheduler, ExecutorOptions, SchedulerOptions};
