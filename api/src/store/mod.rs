//! The API's queries. Each function is one short statement or one transaction.
#[macro_use]
pub mod runs;
pub mod experiments;
pub mod logs;
pub mod metrics;
pub mod queue;
pub mod sweeps;
pub mod table;
pub mod tradeoffs;
