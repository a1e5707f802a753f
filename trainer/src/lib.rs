//! The worker process. Architecture invariant: this is the only crate that links libtorch.

pub mod checkpoint;
pub mod device;
pub mod encoding;
pub mod evaluation;
pub mod execute;
pub mod failure;
pub mod jobs;
pub mod model;
pub mod optim;
pub mod pruning;
pub mod run_log;
pub mod settings;
pub mod store;
pub mod training;
pub mod worker;

pub use settings::Settings;
pub use worker::Worker;
