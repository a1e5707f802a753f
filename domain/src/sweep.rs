//! Hyper-parameter sweeps: a search space over a run template's params, and the params of
//! each trial. Trial `i` of a random sweep depends only on the seed and `i`, so the same
//! sweep submitted twice tries the same params, and a trial's params can be told without
//! drawing the ones before it.
use crate::ValidationError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const MAX_TRIALS: u32 = 500;

/// How one param varies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dimension {
    Choice { values: Vec<Value> },
    Uniform { low: f64, high: f64 },
    LogUniform { low: f64, high: f64 },
    IntUniform { low: i64, high: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every combination of `choice` values, in order.
    Grid,
    /// Independent draws, reproducible from the seed.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Max,
    Min,
}

/// A search space by param path (`learning_rate`, or `fine_tune.epochs` inside a nested
/// object), checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Space(BTreeMap<String, Dimension>);

impl Space {
    /// Checks every dimension; errors name `space.<path>`.
    pub fn new(dimensions: BTreeMap<String, Dimension>) -> Result<Self, ValidationError> {
        if dimensions.is_empty() {
            return Err(ValidationError::new("space", "needs at least one param to vary"));
        }
        for (path, dimension) in &dimensions {
            let field = format!("space.{path}");
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(ValidationError::new(field, "a param path like `learning_rate` or `fine_tune.epochs`"));
            }
            let valid = match dimension {
                Dimension::Choice { values } => !values.is_empty() && values.len() <= 100,
                Dimension::Uniform { low, high } => low.is_finite() && high.is_finite() && low < high,
                Dimension::LogUniform { low, high } => low.is_finite() && high.is_finite() && 0.0 < *low && low < high,
                Dimension::IntUniform { low, high } => low <= high,
            };
            if !valid {
                let rule = match dimension {
                    Dimension::Choice { .. } => "`values` must hold 1 to 100 values",
                    Dimension::Uniform { .. } => "`low` must be below `high`",
                    Dimension::LogUniform { .. } => "`low` must be above 0 and below `high`",
                    Dimension::IntUniform { .. } => "`low` must not be above `high`",
                };
                return Err(ValidationError::new(field, rule));
            }
        }
        Ok(Self(dimensions))
    }

    /// The params of every trial: `max_runs` of them (for a grid, at most every combination).
    pub fn trials(
        &self,
        strategy: Strategy,
        seed: u64,
        max_runs: u32,
    ) -> Result<Vec<BTreeMap<String, Value>>, ValidationError> {
        if !(1..=MAX_TRIALS).contains(&max_runs) {
            return Err(ValidationError::new("max_runs", format!("must be between 1 and {MAX_TRIALS}")));
        }
        match strategy {
            Strategy::Grid => self.grid(max_runs),
            Strategy::Random => Ok((0..max_runs).map(|trial| self.draw(seed, trial)).collect()),
        }
    }

    fn grid(&self, max_runs: u32) -> Result<Vec<BTreeMap<String, Value>>, ValidationError> {
        let mut axes = Vec::new();
        for (path, dimension) in &self.0 {
            match dimension {
                Dimension::Choice { values } => axes.push((path, values)),
                _ => {
                    return Err(ValidationError::new(
                        format!("space.{path}"),
                        "a grid sweep takes `choice` values only",
                    ));
                }
            }
        }
        let mut trials = vec![BTreeMap::new()];
        for (path, values) in axes {
            trials = trials
                .into_iter()
                .flat_map(|partial| {
                    values.iter().map(move |value| {
                        let mut next = partial.clone();
                        next.insert(path.clone(), value.clone());
                        next
                    })
                })
                .collect();
        }
        trials.truncate(max_runs as usize);
        Ok(trials)
    }

    /// The params of random trial number `trial`. They depend only on the seed and the number,
    /// so a sweep's replacement trials continue its sequence of draws.
    pub fn draw(&self, seed: u64, trial: u32) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .enumerate()
            .map(|(index, (path, dimension))| {
                let unit = unit_draw(seed, trial, index as u32);
                let value = match dimension {
                    Dimension::Choice { values } => {
                        values[((unit * values.len() as f64) as usize).min(values.len() - 1)].clone()
                    }
                    Dimension::Uniform { low, high } => Value::from(low + unit * (high - low)),
                    Dimension::LogUniform { low, high } => {
                        Value::from((low.ln() + unit * (high.ln() - low.ln())).exp())
                    }
                    Dimension::IntUniform { low, high } => {
                        let span = (high - low + 1) as f64;
                        Value::from(low + ((unit * span) as i64).min(high - low))
                    }
                };
                (path.clone(), value)
            })
            .collect()
    }
}

/// A number in [0, 1) from the seed, the trial and the dimension: SplitMix64 over the three.
fn unit_draw(seed: u64, trial: u32, dimension: u32) -> f64 {
    let mut x = seed ^ (u64::from(trial) << 32 | u64::from(dimension)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `params` with each trial value set at its path (objects are made along the way).
pub fn apply(params: &Value, trial: &BTreeMap<String, Value>) -> Value {
    let mut params = if params.is_object() { params.clone() } else { Value::Object(Default::default()) };
    for (path, value) in trial {
        let mut at = &mut params;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            if !at.get(*part).is_some_and(Value::is_object) {
                at[*part] = Value::Object(Default::default());
            }
            at = &mut at[*part];
        }
        at[parts[parts.len() - 1]] = value.clone();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space(value: Value) -> Space {
        Space::new(serde_json::from_value(value).expect("dimensions")).expect("valid space")
    }

    #[test]
    fn a_two_by_two_grid_is_every_combination_once() {
        let space = space(json!({
            "learning_rate": {"type": "choice", "values": [0.001, 0.01]},
            "batch_size": {"type": "choice", "values": [32, 64]}
        }));
        let trials = space.trials(Strategy::Grid, 0, 100).expect("trials");
        let pairs: Vec<(Value, Value)> =
            trials.iter().map(|t| (t["batch_size"].clone(), t["learning_rate"].clone())).collect();
        assert_eq!(
            pairs,
            [(json!(32), json!(0.001)), (json!(32), json!(0.01)), (json!(64), json!(0.001)), (json!(64), json!(0.01))]
        );
        assert_eq!(space.trials(Strategy::Grid, 0, 3).expect("capped").len(), 3);
    }

    #[test]
    fn random_draws_repeat_for_a_seed_and_stay_in_their_ranges() {
        let space = space(json!({
            "learning_rate": {"type": "log_uniform", "low": 1e-4, "high": 1e-1},
            "epochs": {"type": "int_uniform", "low": 1, "high": 3},
            "momentum": {"type": "uniform", "low": 0.5, "high": 0.9},
            "optimizer": {"type": "choice", "values": ["adam", "sgd"]}
        }));
        let first = space.trials(Strategy::Random, 7, 200).expect("trials");
        assert_eq!(first, space.trials(Strategy::Random, 7, 200).expect("again"), "the same seed, the same trials");
        assert_ne!(first, space.trials(Strategy::Random, 8, 200).expect("other seed"));
        let lrs: Vec<f64> = first.iter().map(|t| t["learning_rate"].as_f64().expect("number")).collect();
        assert!(lrs.iter().all(|lr| (1e-4..1e-1).contains(lr)));
        assert!(lrs.iter().any(|lr| *lr < 1e-3) && lrs.iter().any(|lr| *lr > 1e-2), "spread over the decades");
        let epochs: std::collections::BTreeSet<i64> =
            first.iter().map(|t| t["epochs"].as_i64().expect("int")).collect();
        assert_eq!(epochs.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(first.iter().any(|t| t["optimizer"] == "sgd") && first.iter().any(|t| t["optimizer"] == "adam"));
    }

    #[test]
    fn bad_spaces_name_their_field() {
        let error =
            |value: Value| Space::new(serde_json::from_value(value).expect("dimensions")).expect_err("invalid").field;
        assert_eq!(error(json!({"lr": {"type": "uniform", "low": 1.0, "high": 0.5}})), "space.lr");
        assert_eq!(error(json!({"lr": {"type": "log_uniform", "low": 0.0, "high": 0.5}})), "space.lr");
        assert_eq!(error(json!({"lr": {"type": "choice", "values": []}})), "space.lr");
        assert_eq!(error(json!({})), "space");
        let grid = space(json!({"lr": {"type": "uniform", "low": 0.1, "high": 0.5}}));
        assert_eq!(grid.trials(Strategy::Grid, 0, 4).expect_err("grid of uniform").field, "space.lr");
        assert_eq!(grid.trials(Strategy::Random, 0, 0).expect_err("no trials").field, "max_runs");
    }

    #[test]
    fn trial_values_go_into_nested_params() {
        let params = json!({"sparsity": 0.5, "fine_tune": {"epochs": 1}});
        let trial =
            BTreeMap::from([("fine_tune.learning_rate".to_owned(), json!(0.01)), ("sparsity".to_owned(), json!(0.9))]);
        assert_eq!(apply(&params, &trial), json!({"sparsity": 0.9, "fine_tune": {"epochs": 1, "learning_rate": 0.01}}));
    }
}
