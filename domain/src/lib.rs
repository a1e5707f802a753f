//! Cairn's shared vocabulary: ids, statuses, validated run parameters and job payloads.
//!
//! Architecture invariant: this crate does no IO beyond reading environment variables. It
//! has no HTTP, no database, no Redis client and no tch, so every process can depend on it
//! and it tests in milliseconds.

pub mod dataset;
pub mod error;
pub mod ids;
pub mod job;
pub mod metrics;
pub mod params;
pub mod retry;
pub mod settings;
pub mod status;
pub mod sweep;

pub use dataset::{DatasetName, SampleRange};
pub use error::ValidationError;
pub use ids::{ExperimentId, RunId};
pub use job::RunJob;
pub use params::{
    DataDefaults, Device, EnsembleParams, EvaluateParams, Layer, Optimizer, PredictInput, PredictParams, PruneMethod,
    PruneParams, QuantizeParams, RunParams, RunRequest, TrainParams, TrainRequest,
};
pub use retry::RetryPolicy;
pub use status::{RunKind, RunStatus};
