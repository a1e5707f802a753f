//! The compression trade-off of an experiment: every measured model with its accuracy, size
//! and latency, as a table and as two scatter charts. A model is marked when no other is at
//! least as accurate and smaller (or faster): the ones worth choosing.
use super::{
    chart::{self, Chart},
    view::percent,
};
use crate::store::tradeoffs::Measured;

pub struct TradeoffLine {
    pub model_id: i64,
    pub evaluation_id: i64,
    pub model: String,
    pub accuracy: String,
    pub cross_entropy: String,
    pub size_kb: String,
    pub nonzero_parameters: String,
    pub latency_1_ms: String,
    pub latency_64_ms: String,
    pub noise_accuracy: String,
    /// No other model is at least as accurate and smaller.
    pub smallest_for_accuracy: bool,
    /// No other model is at least as accurate and faster (batch of 1).
    pub fastest_for_accuracy: bool,
}

/// What the model is, in a few words: `pruned 90% (global)`, `int8`, `ensemble of 3`.
fn describe(row: &Measured) -> String {
    if row.evaluation_kind == "ensemble" {
        let members = row.evaluation_params["members"].as_array().map_or(0, Vec::len);
        return format!("ensemble of {}", members + 1);
    }
    let params = &row.model_params;
    match row.model_kind.as_str() {
        "prune" => {
            let sparsity = params["sparsity"].as_f64().unwrap_or_default();
            let method = match params["method"].as_str() {
                Some("global_magnitude") => "global",
                Some("layer_magnitude") => "layer-wise",
                Some(other) => other,
                None => "?",
            };
            format!("pruned {:.0}% ({method})", sparsity * 100.0)
        }
        "quantize" => match row.model_parent_id {
            Some(parent) => format!("int8 of #{parent}"),
            None => "int8".to_owned(),
        },
        "train" => "trained".to_owned(),
        other => other.to_owned(),
    }
}

/// Whether no other row is at least as accurate and strictly better on `cost` (or as cheap
/// and strictly more accurate).
fn undominated(rows: &[Measured], row: &Measured, cost: impl Fn(&Measured) -> Option<f64>) -> bool {
    let (Some(accuracy), Some(own)) = (row.accuracy, cost(row)) else { return false };
    !rows.iter().any(|other| match (other.accuracy, cost(other)) {
        (Some(a), Some(c)) => a >= accuracy && c <= own && (a > accuracy || c < own),
        _ => false,
    })
}

/// Table lines, most accurate first.
pub fn lines(rows: &[Measured]) -> Vec<TradeoffLine> {
    let number = |value: Option<f64>, digits: usize| value.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    let mut lines: Vec<(f64, TradeoffLine)> = rows
        .iter()
        .map(|row| {
            let line = TradeoffLine {
                model_id: row.model_id,
                evaluation_id: row.evaluation_id,
                model: describe(row),
                accuracy: row.accuracy.map(percent).unwrap_or_default(),
                cross_entropy: number(row.cross_entropy, 4),
                size_kb: number(row.model_bytes.map(|b| b / 1e3), 1),
                nonzero_parameters: number(row.nonzero_parameters, 0),
                latency_1_ms: number(row.latency_1_ms, 3),
                latency_64_ms: number(row.latency_64_ms, 3),
                noise_accuracy: row.noise_accuracy.map(percent).unwrap_or_default(),
                smallest_for_accuracy: undominated(rows, row, |r| r.model_bytes),
                fastest_for_accuracy: undominated(rows, row, |r| r.latency_1_ms),
            };
            (row.accuracy.unwrap_or(f64::NEG_INFINITY), line)
        })
        .collect();
    lines.sort_by(|a, b| b.0.total_cmp(&a.0));
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Accuracy against size and against latency, one colour per kind of model.
pub fn charts(rows: &[Measured]) -> Vec<Chart> {
    let groups = |x: &dyn Fn(&Measured) -> Option<f64>| {
        let mut groups: Vec<(String, Vec<chart::NamedPoint>)> = Vec::new();
        for row in rows {
            let kind = if row.evaluation_kind == "ensemble" { "ensemble" } else { row.model_kind.as_str() };
            let point = (x(row).unwrap_or(f64::NAN), row.accuracy.unwrap_or(f64::NAN), format!("#{}", row.model_id));
            match groups.iter_mut().find(|(name, _)| name == kind) {
                Some((_, points)) => points.push(point),
                None => groups.push((kind.to_owned(), vec![point])),
            }
        }
        groups
    };
    [
        chart::scatter_chart(
            "Accuracy against model size",
            "checkpoint size (kB)",
            "accuracy (fraction)",
            groups(&|row| row.model_bytes.map(|b| b / 1e3)),
        ),
        chart::scatter_chart(
            "Accuracy against latency",
            "latency, batch of 1, median (ms)",
            "accuracy (fraction)",
            groups(&|row| row.latency_1_ms),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn measured(model_id: i64, kind: &str, params: serde_json::Value, accuracy: f64, bytes: f64, ms: f64) -> Measured {
        Measured {
            evaluation_id: model_id + 100,
            evaluation_kind: "evaluate".to_owned(),
            evaluation_params: json!({}),
            model_id,
            model_kind: kind.to_owned(),
            model_params: params,
            model_parent_id: Some(1),
            accuracy: Some(accuracy),
            cross_entropy: Some(0.1),
            model_bytes: Some(bytes),
            nonzero_parameters: Some(1.0),
            latency_1_ms: Some(ms),
            latency_64_ms: Some(ms * 10.0),
            noise_accuracy: Some(accuracy - 0.1),
        }
    }

    #[test]
    fn marks_the_models_no_other_beats_on_both_accuracy_and_cost() {
        let rows = vec![
            measured(1, "train", json!({}), 0.97, 488_000.0, 0.12),
            measured(2, "prune", json!({"sparsity": 0.9, "method": "global_magnitude"}), 0.965, 70_000.0, 0.12),
            measured(3, "prune", json!({"sparsity": 0.5, "method": "layer_magnitude"}), 0.96, 260_000.0, 0.11),
            measured(4, "quantize", json!({}), 0.97, 130_000.0, 0.13),
        ];
        let lines = lines(&rows);
        let by_id = |id| lines.iter().find(|line| line.model_id == id).expect("line");
        assert_eq!(lines[0].accuracy, by_id(1).accuracy, "most accurate first");
        assert!(!by_id(1).smallest_for_accuracy, "int8 is as accurate and smaller");
        assert!(by_id(4).smallest_for_accuracy && by_id(2).smallest_for_accuracy);
        assert!(!by_id(3).smallest_for_accuracy, "pruned 90% is more accurate and smaller");
        assert!(by_id(3).fastest_for_accuracy && by_id(1).fastest_for_accuracy);
        assert_eq!(by_id(2).model, "pruned 90% (global)");
        assert_eq!(charts(&rows).len(), 2);
    }
}
