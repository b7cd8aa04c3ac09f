//! The bank-transactions workload (see the `kappa-workload` crate).

pub use kappa_workload::generate;
