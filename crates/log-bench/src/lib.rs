//! The benchmark workload, shared by the log and view benchmarks.

pub mod workload;
