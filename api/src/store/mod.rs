//! The API's queries. Each function is one short statement or one transaction.
pub mod experiments;
pub mod metrics;
pub mod runs;
pub mod tradeoffs;
