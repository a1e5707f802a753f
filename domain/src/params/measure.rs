//! Measuring and using trained models: evaluation, ensemble evaluation and prediction.
use super::{DataDefaults, Device, seed};
use crate::{DatasetName, RunId, SampleRange, ValidationError};
use serde::{Deserialize, Serialize};

/// The most models one ensemble averages, its parent included.
pub const MAX_ENSEMBLE: usize = 16;

/// Which samples to measure the parent's checkpoint on. Without a dataset, the parent's
/// validation range; the seed draws the noise of the robustness check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    pub dataset: Option<String>,
    pub range: Option<Vec<i64>>,
    pub seed: Option<i64>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    pub dataset: DatasetName,
    pub range: SampleRange,
    pub seed: u64,
    pub device: Device,
}

impl EvaluateRequest {
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }
}

impl EvaluateParams {
    pub fn validate(request: &EvaluateRequest, data: &DataDefaults) -> Result<Self, ValidationError> {
        Ok(Self {
            dataset: data.dataset.clone(),
            range: data.range("range", request.range.as_deref(), data.validation_range)?,
            seed: seed(request.seed)?,
            device: request.device.unwrap_or_default(),
        })
    }
}

/// The average of the softmax outputs of several models, evaluated like one model: the
/// parent's and those of `members`, succeeded runs of the same experiment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleRequest {
    pub members: Vec<i64>,
    pub dataset: Option<String>,
    pub range: Option<Vec<i64>>,
    pub seed: Option<i64>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleParams {
    pub members: Vec<RunId>,
    pub dataset: DatasetName,
    pub range: SampleRange,
    pub seed: u64,
    pub device: Device,
}

impl EnsembleRequest {
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }

    /// The member runs besides the parent, checked for count and repeats: the caller then
    /// checks each exists.
    pub fn member_ids(&self) -> Result<Vec<RunId>, ValidationError> {
        if !(1..MAX_ENSEMBLE).contains(&self.members.len()) {
            return Err(ValidationError::new(
                "members",
                format!("must list 1 to {} runs to average with the parent", MAX_ENSEMBLE - 1),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) = self.members.iter().find(|id| !seen.insert(**id)) {
            return Err(ValidationError::new("members", format!("run {repeated} is listed twice")));
        }
        Ok(self.members.iter().map(|id| RunId(*id)).collect())
    }
}

impl EnsembleParams {
    pub fn validate(request: &EnsembleRequest, data: &DataDefaults) -> Result<Self, ValidationError> {
        Ok(Self {
            members: request.member_ids()?,
            dataset: data.dataset.clone(),
            range: data.range("range", request.range.as_deref(), data.validation_range)?,
            seed: seed(request.seed)?,
            device: request.device.unwrap_or_default(),
        })
    }

    /// The measurement each member's averaged output gets.
    pub fn evaluation(&self) -> EvaluateParams {
        EvaluateParams { dataset: self.dataset.clone(), range: self.range, seed: self.seed, device: self.device }
    }
}

/// Predicted classes for a dataset range (the parent's validation range by default) or for
/// the images of an uploaded IDX file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub dataset: Option<String>,
    pub range: Option<Vec<i64>>,
    pub upload_id: Option<i64>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictInput {
    Dataset { dataset: DatasetName, range: SampleRange },
    Upload { upload_id: i64, images: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {
    pub input: PredictInput,
    pub device: Device,
}

impl PredictRequest {
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }
}

impl PredictParams {
    /// `upload_images` is the image count of the upload the request names, which the caller
    /// looked up (and checked the user may read).
    pub fn validate(
        request: &PredictRequest,
        data: &DataDefaults,
        upload_images: Option<usize>,
    ) -> Result<Self, ValidationError> {
        let input = match (request.upload_id, upload_images) {
            (Some(_), _) if request.dataset.is_some() || request.range.is_some() => {
                return Err(ValidationError::new("upload_id", "predict either an upload or a dataset range, not both"));
            }
            (Some(upload_id), Some(images)) => PredictInput::Upload { upload_id, images },
            (Some(_), None) => return Err(ValidationError::new("upload_id", "no such upload")),
            (None, _) => PredictInput::Dataset {
                dataset: data.dataset.clone(),
                range: data.range("range", request.range.as_deref(), data.validation_range)?,
            },
        };
        Ok(Self { input, device: request.device.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mnist() -> DataDefaults {
        DataDefaults::split(DatasetName::parse("mnist").expect("valid"), 10_000)
    }

    #[test]
    fn evaluate_defaults_to_the_validation_range_and_checks_its_range() {
        let request: EvaluateRequest = serde_json::from_value(json!({})).expect("decodes");
        assert_eq!(EvaluateParams::validate(&request, &mnist()).expect("valid").range, SampleRange::new(8_000, 10_000));
        let request: EvaluateRequest = serde_json::from_value(json!({"range": [5, 10_001]})).expect("decodes");
        assert_eq!(EvaluateParams::validate(&request, &mnist()).expect_err("past the end").field, "range");
        assert!(serde_json::from_value::<EvaluateRequest>(json!({"dataset": "mnist", "epochs": 1})).is_err());
    }

    #[test]
    fn an_ensemble_averages_its_parent_with_one_to_fifteen_distinct_members() {
        for (members, ok) in [
            (json!([]), false),
            (json!([1, 1]), false),
            (json!([1]), true),
            (json!((1..=16).collect::<Vec<_>>()), false),
        ] {
            let request: EnsembleRequest = serde_json::from_value(json!({"members": members})).expect("decodes");
            let result = EnsembleParams::validate(&request, &mnist());
            assert_eq!(result.is_ok(), ok, "{members}");
            if let Err(err) = result {
                assert_eq!(err.field, "members");
            }
        }
    }

    #[test]
    fn predict_reads_an_upload_or_a_range_but_not_both() {
        let request: PredictRequest = serde_json::from_value(json!({"upload_id": 3})).expect("decodes");
        assert_eq!(
            PredictParams::validate(&request, &mnist(), Some(20)).expect("valid").input,
            PredictInput::Upload { upload_id: 3, images: 20 }
        );
        assert_eq!(PredictParams::validate(&request, &mnist(), None).expect_err("missing").field, "upload_id");
        let request: PredictRequest =
            serde_json::from_value(json!({"upload_id": 3, "range": [0, 5]})).expect("decodes");
        assert_eq!(PredictParams::validate(&request, &mnist(), Some(20)).expect_err("both").field, "upload_id");
        let request: PredictRequest = serde_json::from_value(json!({"range": [0, 5]})).expect("decodes");
        let params = PredictParams::validate(&request, &mnist(), None).expect("valid");
        let stored = serde_json::to_value(&params).expect("serialises");
        assert_eq!(serde_json::from_value::<PredictParams>(stored).expect("round trip"), params);
    }
}
