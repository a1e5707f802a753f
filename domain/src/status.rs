use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Where a run is in its life. Postgres holds it; every transition is a guarded UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A pipeline child whose parent has not succeeded yet.
    Waiting,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A sweep's trial that early stopping (ASHA) ended at a rung; its metrics are kept.
    StoppedEarly,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        Self::Waiting,
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::StoppedEarly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::StoppedEarly => "stopped_early",
        }
    }

    /// A finished run never changes status again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::StoppedEarly)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`; expected one of {}", status_names()))
    }
}

fn status_names() -> String {
    RunStatus::ALL.map(RunStatus::as_str).join(", ")
}

/// What a run does. Every kind but `train` starts from the checkpoint of a parent run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Train,
    /// Measures the parent's model on a dataset range.
    Evaluate,
    /// Removes weights from the parent's model, then fine-tunes what is left.
    Prune,
    /// Stores the parent's weights as int8 with one scale per output channel.
    Quantize,
    /// Measures the average of the softmax outputs of several models.
    Ensemble,
    /// Writes the parent model's predictions as CSV.
    Predict,
}

impl RunKind {
    pub const ALL: [RunKind; 6] =
        [Self::Train, Self::Evaluate, Self::Prune, Self::Quantize, Self::Ensemble, Self::Predict];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Evaluate => "evaluate",
            Self::Prune => "prune",
            Self::Quantize => "quantize",
            Self::Ensemble => "ensemble",
            Self::Predict => "predict",
        }
    }

    /// Whether a run of this kind ends with a model that other runs can start from.
    pub fn makes_model(self) -> bool {
        matches!(self, Self::Train | Self::Prune | Self::Quantize)
    }

    /// Why a run of this kind cannot start from a run of kind `parent` (or from no parent).
    pub fn parent_rule(self, parent: Option<RunKind>) -> Result<(), String> {
        match (self, parent) {
            (Self::Train, None) => Ok(()),
            (Self::Train, Some(_)) => Err("a train run has no parent".to_owned()),
            (_, None) => Err(format!("required: the run whose model to {}", self.verb())),
            // Fine-tuning an int8 model would undo its quantization.
            (Self::Prune, Some(Self::Quantize)) => Err("a quantized model cannot be pruned; prune first".to_owned()),
            (Self::Quantize, Some(Self::Quantize)) => Err("this model is quantized already".to_owned()),
            (_, Some(parent)) if parent.makes_model() => Ok(()),
            (_, Some(parent)) => {
                Err(format!("a {parent} run has no model to {}; choose a train, prune or quantize run", self.verb()))
            }
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Evaluate | Self::Ensemble => "evaluate",
            Self::Prune => "prune",
            Self::Quantize => "quantize",
            Self::Predict => "predict with",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown kind `{s}`; expected one of {}", Self::ALL.map(RunKind::as_str).join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        assert!("paused".parse::<RunStatus>().is_err());
        for kind in RunKind::ALL {
            assert_eq!(kind.as_str().parse::<RunKind>(), Ok(kind));
        }
    }

    #[test]
    fn only_runs_that_make_a_model_can_be_parents() {
        assert!(RunKind::Train.parent_rule(None).is_ok());
        assert!(RunKind::Train.parent_rule(Some(RunKind::Train)).is_err());
        assert!(RunKind::Prune.parent_rule(Some(RunKind::Prune)).is_ok());
        assert!(RunKind::Evaluate.parent_rule(Some(RunKind::Quantize)).is_ok());
        assert!(RunKind::Evaluate.parent_rule(None).is_err());
        assert!(RunKind::Prune.parent_rule(Some(RunKind::Quantize)).is_err());
        assert!(RunKind::Quantize.parent_rule(Some(RunKind::Quantize)).is_err());
        assert!(RunKind::Predict.parent_rule(Some(RunKind::Evaluate)).is_err());
    }
}
