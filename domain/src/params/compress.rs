//! Making a trained model smaller: pruning (with fine-tuning) and int8 quantization.
use super::{DataDefaults, Device, Schedule, ScheduleRequest, TrainParams};
use crate::{DatasetName, SampleRange, ValidationError};
use serde::{Deserialize, Serialize};

/// The largest sparsity a prune run may ask for: at 100% nothing is left to predict with.
pub const MAX_SPARSITY: f64 = 0.99;

/// How to choose the weights to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneMethod {
    /// The smallest weights by magnitude over all chosen layers together (one threshold).
    GlobalMagnitude,
    /// The smallest weights by magnitude in each chosen layer, the same fraction in each.
    LayerMagnitude,
    /// Whole conv filters and dense units with the smallest L1 norm, removed from the model:
    /// the result is a smaller dense model.
    Structured,
}

/// The weight layers of the CNN, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Conv1,
    Conv2,
    Fc1,
    Fc2,
}

impl Layer {
    pub const ALL: [Layer; 4] = [Self::Conv1, Self::Conv2, Self::Fc1, Self::Fc2];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conv1 => "conv1",
            Self::Conv2 => "conv2",
            Self::Fc1 => "fc1",
            Self::Fc2 => "fc2",
        }
    }
}

/// The layers structured pruning can shrink: `fc2`'s units are the ten classes.
pub const STRUCTURED_LAYERS: [Layer; 3] = [Layer::Conv1, Layer::Conv2, Layer::Fc1];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Without a dataset, the parent's dataset and ranges are used.
    pub dataset: Option<String>,
    pub train_range: Option<Vec<i64>>,
    pub validation_range: Option<Vec<i64>>,
    pub method: Option<PruneMethod>,
    pub sparsity: f64,
    pub layers: Option<Vec<Layer>>,
    /// Fine-tuning after pruning; `epochs` may be 0. Defaults to one epoch.
    pub fine_tune: Option<ScheduleRequest>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneParams {
    pub dataset: DatasetName,
    pub train_range: SampleRange,
    pub validation_range: SampleRange,
    pub method: PruneMethod,
    /// The fraction of weights (unstructured) or of units (structured) to remove from each
    /// chosen layer; for global magnitude, from the chosen layers together.
    pub sparsity: f64,
    pub layers: Vec<Layer>,
    pub fine_tune: Schedule,
    pub device: Device,
}

impl PruneRequest {
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }
}

impl PruneParams {
    pub fn validate(request: &PruneRequest, data: &DataDefaults) -> Result<Self, ValidationError> {
        let train_range = data.range("train_range", request.train_range.as_deref(), data.train_range)?;
        let validation_range =
            data.range("validation_range", request.validation_range.as_deref(), data.validation_range)?;
        if train_range.overlaps(&validation_range) {
            return Err(ValidationError::new(
                "validation_range",
                format!("must not overlap train_range {train_range}"),
            ));
        }
        let method = request.method.unwrap_or(PruneMethod::GlobalMagnitude);
        if !(request.sparsity.is_finite() && (0.0..=MAX_SPARSITY).contains(&request.sparsity)) {
            return Err(ValidationError::new("sparsity", format!("must be between 0 and {MAX_SPARSITY}")));
        }
        let allowed: &[Layer] = if method == PruneMethod::Structured { &STRUCTURED_LAYERS } else { &Layer::ALL };
        let mut layers = request.layers.clone().unwrap_or_else(|| allowed.to_vec());
        layers.sort();
        layers.dedup();
        if layers.is_empty() {
            return Err(ValidationError::new("layers", "must name at least one layer"));
        }
        if let Some(layer) = layers.iter().find(|layer| !allowed.contains(layer)) {
            return Err(ValidationError::new(
                "layers",
                format!(
                    "structured pruning cannot remove units of {}: its outputs are the classes; choose from conv1, conv2, fc1",
                    layer.as_str()
                ),
            ));
        }
        let fine_tune = Schedule::validate(&request.fine_tune.clone().unwrap_or_default(), 0, 1, train_range.len())
            .map_err(|err| err.within("fine_tune"))?;
        Ok(Self {
            dataset: data.dataset.clone(),
            train_range,
            validation_range,
            method,
            sparsity: request.sparsity,
            layers,
            fine_tune,
            device: request.device.unwrap_or_default(),
        })
    }

    /// The training that fine-tunes the pruned model.
    pub fn fine_tune_params(&self) -> TrainParams {
        let schedule = &self.fine_tune;
        TrainParams {
            dataset: self.dataset.clone(),
            train_range: self.train_range,
            validation_range: self.validation_range,
            epochs: schedule.epochs,
            batch_size: schedule.batch_size,
            learning_rate: schedule.learning_rate,
            optimizer: schedule.optimizer,
            seed: schedule.seed,
            device: self.device,
            log_every: schedule.log_every,
        }
    }
}

/// Post-training quantization of every weight to int8, symmetric, one scale per output
/// channel. The range measures accuracy before and after.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeRequest {
    pub dataset: Option<String>,
    pub range: Option<Vec<i64>>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeParams {
    pub dataset: DatasetName,
    pub range: SampleRange,
    pub device: Device,
}

impl QuantizeRequest {
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }
}

impl QuantizeParams {
    pub fn validate(request: &QuantizeRequest, data: &DataDefaults) -> Result<Self, ValidationError> {
        Ok(Self {
            dataset: data.dataset.clone(),
            range: data.range("range", request.range.as_deref(), data.validation_range)?,
            device: request.device.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mnist() -> DataDefaults {
        DataDefaults::split(DatasetName::parse("mnist").expect("valid"), 10_000)
    }

    fn prune(body: serde_json::Value) -> Result<PruneParams, ValidationError> {
        PruneParams::validate(&serde_json::from_value(body).expect("decodes"), &mnist())
    }

    #[test]
    fn prune_defaults_to_global_magnitude_over_every_layer_with_one_fine_tune_epoch() {
        let params = prune(json!({"sparsity": 0.9})).expect("valid");
        assert_eq!(params.method, PruneMethod::GlobalMagnitude);
        assert_eq!(params.layers, Layer::ALL.to_vec());
        assert_eq!(params.fine_tune.epochs, 1);
        assert_eq!(
            (params.train_range, params.validation_range),
            (SampleRange::new(0, 8_000), SampleRange::new(8_000, 10_000))
        );
        let structured =
            prune(json!({"sparsity": 0.5, "method": "structured", "fine_tune": {"epochs": 0}})).expect("valid");
        assert_eq!(structured.layers, STRUCTURED_LAYERS.to_vec());
        assert_eq!(structured.fine_tune_params().epochs, 0);
    }

    #[test]
    fn prune_rejects_each_bad_value_naming_its_field() {
        let cases = [
            (json!({"sparsity": 1.0}), "sparsity"),
            (json!({"sparsity": -0.1}), "sparsity"),
            (json!({"sparsity": 0.5, "layers": []}), "layers"),
            (json!({"sparsity": 0.5, "method": "structured", "layers": ["fc2"]}), "layers"),
            (json!({"sparsity": 0.5, "fine_tune": {"epochs": -1}}), "fine_tune.epochs"),
            (json!({"sparsity": 0.5, "fine_tune": {"batch_size": 0}}), "fine_tune.batch_size"),
            (json!({"sparsity": 0.5, "train_range": [0, 10_001]}), "train_range"),
            (json!({"sparsity": 0.5, "train_range": [0, 100], "validation_range": [50, 60]}), "validation_range"),
        ];
        for (body, field) in cases {
            assert_eq!(prune(body.clone()).expect_err("rejected").field, field, "{body}");
        }
        assert!(serde_json::from_value::<PruneRequest>(json!({"sparsity": 0.5, "method": "random"})).is_err());
        assert!(serde_json::from_value::<PruneRequest>(json!({"sparsity": 0.5, "layers": ["conv3"]})).is_err());
    }

    #[test]
    fn quantize_measures_on_the_inherited_validation_range_unless_told() {
        let request: QuantizeRequest = serde_json::from_value(json!({})).expect("decodes");
        assert_eq!(QuantizeParams::validate(&request, &mnist()).expect("valid").range, SampleRange::new(8_000, 10_000));
        let request: QuantizeRequest = serde_json::from_value(json!({"range": [0, 0]})).expect("decodes");
        assert_eq!(QuantizeParams::validate(&request, &mnist()).expect_err("empty").field, "range");
    }
}
