//! Run parameters: for each kind, the request as a client sends it and the validated, fully
//! resolved form stored with the run and handed to the worker. Numbers are read wide so that
//! an out-of-range value gets a rule ("must be between 1 and 1000") rather than a type error.
mod compress;
mod measure;
mod train;

pub use compress::{
    Layer, MAX_SPARSITY, PruneMethod, PruneParams, PruneRequest, QuantizeParams, QuantizeRequest, STRUCTURED_LAYERS,
};
pub use measure::{
    EnsembleParams, EnsembleRequest, EvaluateParams, EvaluateRequest, MAX_ENSEMBLE, PredictInput, PredictParams,
    PredictRequest,
};
pub use train::{Schedule, ScheduleRequest, TrainParams, TrainRequest};

use crate::{DatasetName, RunKind, SampleRange, ValidationError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Adam,
    Sgd,
}

/// Where to run. `auto` takes CUDA when the worker has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The dataset a run reads, its size, and the ranges it defaults to: the 80/20 split of a
/// dataset it names itself, or its parent's ranges when it inherits the parent's dataset (a
/// prune run fine-tunes on its parent's training range, an evaluation measures on its
/// parent's validation range).
#[derive(Debug, Clone, PartialEq)]
pub struct DataDefaults {
    pub dataset: DatasetName,
    pub len: usize,
    pub train_range: SampleRange,
    pub validation_range: SampleRange,
}

impl DataDefaults {
    /// The first 80% of a dataset of `len` samples trains, the last 20% validates.
    pub fn split(dataset: DatasetName, len: usize) -> Self {
        let split = len * 4 / 5;
        Self { dataset, len, train_range: SampleRange::new(0, split), validation_range: SampleRange::new(split, len) }
    }

    /// The defaults of a child that inherits `inherited`, a dataset of `len` samples.
    pub fn inherit(inherited: Inherited, len: usize) -> Self {
        let split = Self::split(inherited.dataset, len);
        Self {
            train_range: inherited.train_range.unwrap_or(split.train_range),
            validation_range: inherited.validation_range.unwrap_or(split.validation_range),
            ..split
        }
    }

    /// A range a request gave, checked against the dataset, or the default.
    fn range(&self, field: &str, given: Option<&[i64]>, default: SampleRange) -> Result<SampleRange, ValidationError> {
        match given {
            Some(range) => parse_range(field, range, self.len),
            None => Ok(default),
        }
    }
}

/// What a child inherits from its parent when it names no dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Inherited {
    pub dataset: DatasetName,
    pub train_range: Option<SampleRange>,
    pub validation_range: Option<SampleRange>,
}

/// A run's parameters as a client sent them, decoded for its kind.
#[derive(Debug, Clone)]
pub enum RunRequest {
    Train(TrainRequest),
    Evaluate(EvaluateRequest),
    Prune(PruneRequest),
    Quantize(QuantizeRequest),
    Ensemble(EnsembleRequest),
    Predict(PredictRequest),
}

impl RunRequest {
    /// The dataset the request names; without one, a child reads its parent's.
    pub fn dataset(&self) -> Option<&str> {
        match self {
            Self::Train(request) => Some(&request.dataset),
            Self::Evaluate(request) => request.dataset(),
            Self::Prune(request) => request.dataset(),
            Self::Quantize(request) => request.dataset(),
            Self::Ensemble(request) => request.dataset(),
            Self::Predict(request) => request.dataset(),
        }
    }

    /// Validates against the data the run reads. `upload_images` is the image count of the
    /// upload a predict request names, looked up by the caller.
    pub fn validate(&self, data: &DataDefaults, upload_images: Option<usize>) -> Result<RunParams, ValidationError> {
        Ok(match self {
            Self::Train(request) => RunParams::Train(TrainParams::validate(request, data.len)?),
            Self::Evaluate(request) => RunParams::Evaluate(EvaluateParams::validate(request, data)?),
            Self::Prune(request) => RunParams::Prune(PruneParams::validate(request, data)?),
            Self::Quantize(request) => RunParams::Quantize(QuantizeParams::validate(request, data)?),
            Self::Ensemble(request) => RunParams::Ensemble(EnsembleParams::validate(request, data)?),
            Self::Predict(request) => RunParams::Predict(PredictParams::validate(request, data, upload_images)?),
        })
    }
}

/// A run's validated parameters, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum RunParams {
    Train(TrainParams),
    Evaluate(EvaluateParams),
    Prune(PruneParams),
    Quantize(QuantizeParams),
    Ensemble(EnsembleParams),
    Predict(PredictParams),
}

impl RunParams {
    /// Reads parameters stored with a run of `kind`.
    pub fn from_stored(kind: RunKind, params: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            RunKind::Train => Self::Train(serde_json::from_value(params)?),
            RunKind::Evaluate => Self::Evaluate(serde_json::from_value(params)?),
            RunKind::Prune => Self::Prune(serde_json::from_value(params)?),
            RunKind::Quantize => Self::Quantize(serde_json::from_value(params)?),
            RunKind::Ensemble => Self::Ensemble(serde_json::from_value(params)?),
            RunKind::Predict => Self::Predict(serde_json::from_value(params)?),
        })
    }

    /// The parameters as stored: the kind lives in its own column.
    pub fn to_stored(&self) -> serde_json::Value {
        let stored = match self {
            Self::Train(params) => serde_json::to_value(params),
            Self::Evaluate(params) => serde_json::to_value(params),
            Self::Prune(params) => serde_json::to_value(params),
            Self::Quantize(params) => serde_json::to_value(params),
            Self::Ensemble(params) => serde_json::to_value(params),
            Self::Predict(params) => serde_json::to_value(params),
        };
        // Plain structs of numbers, strings and arrays always serialise.
        stored.unwrap_or_default()
    }

    pub fn kind(&self) -> RunKind {
        match self {
            Self::Train(_) => RunKind::Train,
            Self::Evaluate(_) => RunKind::Evaluate,
            Self::Prune(_) => RunKind::Prune,
            Self::Quantize(_) => RunKind::Quantize,
            Self::Ensemble(_) => RunKind::Ensemble,
            Self::Predict(_) => RunKind::Predict,
        }
    }

    /// What a child of this run inherits; `None` for the kinds that make no model, which
    /// have no children.
    pub fn inherited(&self) -> Option<Inherited> {
        let (dataset, train_range, validation_range) = match self {
            Self::Train(p) => (&p.dataset, Some(p.train_range), Some(p.validation_range)),
            Self::Prune(p) => (&p.dataset, Some(p.train_range), Some(p.validation_range)),
            Self::Quantize(p) => (&p.dataset, None, Some(p.range)),
            Self::Evaluate(_) | Self::Ensemble(_) | Self::Predict(_) => return None,
        };
        Some(Inherited { dataset: dataset.clone(), train_range, validation_range })
    }
}

pub(crate) fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, ValidationError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(field, format!("must be between {min} and {max}")))
    }
}

pub(crate) fn parse_range(field: &str, range: &[i64], dataset_len: usize) -> Result<SampleRange, ValidationError> {
    let len = dataset_len as i64;
    match *range {
        [start, end] if 0 <= start && start < end && end <= len => Ok(SampleRange::new(start as usize, end as usize)),
        _ => Err(ValidationError::new(
            field,
            format!("must be [start, end] with 0 <= start < end <= {len} (the dataset's size)"),
        )),
    }
}

pub(crate) fn seed(value: Option<i64>) -> Result<u64, ValidationError> {
    match value.unwrap_or(0) {
        seed if seed < 0 => Err(ValidationError::new("seed", "must not be negative")),
        seed => Ok(seed as u64),
    }
}
