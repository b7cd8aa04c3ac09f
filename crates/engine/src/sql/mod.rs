//! The SQL front end: statements Kappa adds to PostgreSQL's, and AS OF.

pub mod insert;
pub mod point;
pub mod statement;

pub use statement::{AsOf, DropKind, Statement, parse};
