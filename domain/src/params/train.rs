//! Training parameters: the raw request as a client sends it, and the validated, fully
//! resolved form that is stored with the run and handed to the trainer.
use super::{Device, Optimizer, in_range, parse_range};
use crate::{DatasetName, SampleRange, ValidationError};
use serde::{Deserialize, Serialize};

pub const MAX_EPOCHS: i64 = 1_000;
pub const MAX_BATCH_SIZE: i64 = 65_536;
pub const MAX_LEARNING_RATE: f64 = 10.0;
pub const MAX_LOG_EVERY: i64 = 1_000_000;

/// A train request as a client sends it. Numbers are read wide so that an out-of-range
/// value gets a rule ("must be between 1 and 1000") rather than a type error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    pub dataset: String,
    pub train_range: Option<Vec<i64>>,
    pub validation_range: Option<Vec<i64>>,
    pub epochs: Option<i64>,
    pub batch_size: Option<i64>,
    pub learning_rate: Option<f64>,
    pub optimizer: Option<Optimizer>,
    pub seed: Option<i64>,
    pub device: Option<Device>,
    pub log_every: Option<i64>,
}

/// Validated training parameters with every default resolved, so the stored run says
/// exactly what was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    pub dataset: DatasetName,
    pub train_range: SampleRange,
    pub validation_range: SampleRange,
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub optimizer: Optimizer,
    pub seed: u64,
    pub device: Device,
    /// Log the training loss every this many steps.
    pub log_every: u32,
}

impl TrainRequest {
    /// The dataset name alone, so the caller can look up how many samples it has before
    /// validating the rest.
    pub fn dataset_name(&self) -> Result<DatasetName, ValidationError> {
        DatasetName::parse(&self.dataset)
    }
}

/// How long and how to train, as a client sends it: the knobs a train run and a prune run's
/// fine-tuning share.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub epochs: Option<i64>,
    pub batch_size: Option<i64>,
    pub learning_rate: Option<f64>,
    pub optimizer: Option<Optimizer>,
    pub seed: Option<i64>,
    pub log_every: Option<i64>,
}

/// A validated `ScheduleRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub optimizer: Optimizer,
    pub seed: u64,
    pub log_every: u32,
}

impl Schedule {
    /// Validates against a training range of `train_len` samples (it bounds the batch size);
    /// epochs must be at least `min_epochs` and default to `default_epochs`.
    pub fn validate(
        request: &ScheduleRequest,
        min_epochs: i64,
        default_epochs: i64,
        train_len: usize,
    ) -> Result<Self, ValidationError> {
        let epochs = in_range("epochs", request.epochs.unwrap_or(default_epochs), min_epochs, MAX_EPOCHS)?;
        let max_batch = (train_len as i64).min(MAX_BATCH_SIZE);
        let batch_size = in_range("batch_size", request.batch_size.unwrap_or(32), 1, max_batch)
            .map_err(|err| ValidationError::new(err.field, format!("{} (the size of train_range)", err.message)))?;
        let learning_rate = request.learning_rate.unwrap_or(1e-3);
        if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= MAX_LEARNING_RATE) {
            return Err(ValidationError::new(
                "learning_rate",
                format!("must be greater than 0 and at most {MAX_LEARNING_RATE}"),
            ));
        }
        let seed = request.seed.unwrap_or(0);
        if seed < 0 {
            return Err(ValidationError::new("seed", "must not be negative"));
        }
        let log_every = in_range("log_every", request.log_every.unwrap_or(50), 1, MAX_LOG_EVERY)?;
        Ok(Self {
            epochs: epochs as u32,
            batch_size: batch_size as u32,
            learning_rate,
            optimizer: request.optimizer.unwrap_or(Optimizer::Adam),
            seed: seed as u64,
            log_every: log_every as u32,
        })
    }
}

impl TrainParams {
    /// Validates a request against a dataset of `dataset_len` samples. Without ranges, the
    /// first 80% trains and the last 20% validates.
    pub fn validate(request: &TrainRequest, dataset_len: usize) -> Result<Self, ValidationError> {
        let dataset = request.dataset_name()?;
        let split = dataset_len * 4 / 5;
        let train_range = match &request.train_range {
            Some(range) => parse_range("train_range", range, dataset_len)?,
            None => SampleRange::new(0, split),
        };
        let validation_range = match &request.validation_range {
            Some(range) => parse_range("validation_range", range, dataset_len)?,
            None => SampleRange::new(split, dataset_len),
        };
        if train_range.overlaps(&validation_range) {
            return Err(ValidationError::new(
                "validation_range",
                format!("must not overlap train_range {train_range}"),
            ));
        }
        let schedule = Schedule::validate(
            &ScheduleRequest {
                epochs: request.epochs,
                batch_size: request.batch_size,
                learning_rate: request.learning_rate,
                optimizer: request.optimizer,
                seed: request.seed,
                log_every: request.log_every,
            },
            1,
            2,
            train_range.len(),
        )?;
        Ok(Self {
            dataset,
            train_range,
            validation_range,
            epochs: schedule.epochs,
            batch_size: schedule.batch_size,
            learning_rate: schedule.learning_rate,
            optimizer: schedule.optimizer,
            seed: schedule.seed,
            device: request.device.unwrap_or_default(),
            log_every: schedule.log_every,
        })
    }

    /// Training steps in one epoch (the last batch may be smaller).
    pub fn steps_per_epoch(&self) -> u64 {
        (self.train_range.len() as u64).div_ceil(u64::from(self.batch_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> TrainRequest {
        serde_json::from_value(body).expect("request decodes")
    }

    fn rejected(body: serde_json::Value) -> ValidationError {
        TrainParams::validate(&request(body), 10_000).expect_err("must be rejected")
    }

    #[test]
    fn fills_defaults_and_splits_eighty_twenty() {
        let params = TrainParams::validate(&request(json!({"dataset": "mnist"})), 10_000).expect("valid");
        assert_eq!(params.train_range, SampleRange::new(0, 8_000));
        assert_eq!(params.validation_range, SampleRange::new(8_000, 10_000));
        assert_eq!((params.epochs, params.batch_size, params.seed), (2, 32, 0));
        assert_eq!(params.optimizer, Optimizer::Adam);
        assert_eq!(params.device, Device::Auto);
        assert_eq!(params.steps_per_epoch(), 250);
    }

    #[test]
    fn keeps_explicit_values() {
        let params = TrainParams::validate(
            &request(json!({"dataset": "mnist/t10k", "train_range": [0, 100], "validation_range": [100, 150],
                "epochs": 3, "batch_size": 100, "learning_rate": 0.5, "optimizer": "sgd", "seed": 7,
                "device": "cpu", "log_every": 1})),
            10_000,
        )
        .expect("valid");
        assert_eq!(params.batch_size, 100);
        assert_eq!(params.optimizer, Optimizer::Sgd);
        assert_eq!(params.device, Device::Cpu);
        assert_eq!(params.steps_per_epoch(), 1);
    }

    #[test]
    fn rejects_each_out_of_range_value_naming_its_field() {
        let cases = [
            (json!({"dataset": "mnist", "epochs": 0}), "epochs"),
            (json!({"dataset": "mnist", "epochs": 1001}), "epochs"),
            (json!({"dataset": "mnist", "batch_size": 0}), "batch_size"),
            (
                json!({"dataset": "mnist", "train_range": [0, 10], "validation_range": [10, 20], "batch_size": 11}),
                "batch_size",
            ),
            (json!({"dataset": "mnist", "learning_rate": -0.1}), "learning_rate"),
            (json!({"dataset": "mnist", "learning_rate": 0.0}), "learning_rate"),
            (json!({"dataset": "mnist", "learning_rate": 11.0}), "learning_rate"),
            (json!({"dataset": "mnist", "seed": -1}), "seed"),
            (json!({"dataset": "mnist", "log_every": 0}), "log_every"),
            (json!({"dataset": "mnist", "train_range": [0, 10_001]}), "train_range"),
            (json!({"dataset": "mnist", "train_range": [5, 5]}), "train_range"),
            (json!({"dataset": "mnist", "validation_range": [-1, 5]}), "validation_range"),
            (json!({"dataset": "mnist", "train_range": [0, 1, 2]}), "train_range"),
            (json!({"dataset": "mnist", "train_range": [0, 100], "validation_range": [50, 150]}), "validation_range"),
            (json!({"dataset": "../secrets"}), "dataset"),
        ];
        for (body, field) in cases {
            let err = rejected(body.clone());
            assert_eq!(err.field, field, "{body}: {err}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_do_not_decode() {
        assert!(serde_json::from_value::<TrainRequest>(json!({"dataset": "mnist", "epoch": 2})).is_err());
        assert!(serde_json::from_value::<TrainRequest>(json!({"dataset": "mnist", "epochs": "two"})).is_err());
        assert!(serde_json::from_value::<TrainRequest>(json!({"dataset": "mnist", "optimizer": "adamw"})).is_err());
        assert!(serde_json::from_value::<TrainRequest>(json!({"epochs": 2})).is_err());
    }

    #[test]
    fn validated_params_round_trip_through_json() {
        let params = TrainParams::validate(&request(json!({"dataset": "synthetic-digits"})), 10_000).expect("valid");
        let stored = serde_json::to_value(&params).expect("serialises");
        assert_eq!(serde_json::from_value::<TrainParams>(stored).expect("decodes"), params);
    }
}
