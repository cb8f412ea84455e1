//! Integration tests: the example project end to end, through the library and the
//! real `quern` binary. One test binary, one module per area.

mod airflow;
mod alerts;
mod backfill;
mod cli;
mod commands;
mod common;
mod compression;
mod dialect;
mod distributed;
mod e2e;
mod errors;
mod expectations;
mod faults;
mod forecast;
mod functions;
mod memory;
mod metrics;
mod mlflow;
mod models;
mod pipeline_tests;
mod project;
mod render;
mod s3;
mod scan;
mod shape;
mod spark_examples;
mod training;
