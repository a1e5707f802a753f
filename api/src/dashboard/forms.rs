//! The new-run form: a train run and, optionally, the pipeline after it (prune at several
//! sparsities, quantize, evaluate every model). Every field arrives as text and is parsed
//! into a submission; on error the page is shown again with the user's text and a message
//! next to each field.
use crate::submit::RunSubmission;
use cairn_domain::{RunKind, params::MAX_SPARSITY};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub csrf: String,
    /// Optional: what tables and chart legends call the run.
    pub name: String,
    pub dataset: String,
    pub train_start: String,
    pub train_end: String,
    pub validation_start: String,
    pub validation_end: String,
    pub epochs: String,
    pub batch_size: String,
    pub learning_rate: String,
    pub optimizer: String,
    pub seed: String,
    pub device: String,
    /// Comma-separated, e.g. `0.5, 0.75, 0.9`: one prune run per sparsity.
    pub prune_sparsities: String,
    pub prune_method: String,
    pub fine_tune_epochs: String,
    /// Checkboxes: `on` when ticked.
    pub quantize: String,
    pub evaluate: String,
}

/// Error messages by form field.
#[derive(Debug, Default)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn of(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TrainForm {
    /// The form a new run starts from.
    pub fn defaults() -> Self {
        Self {
            dataset: cairn_domain::dataset::SYNTHETIC_DIGITS.to_owned(),
            epochs: "2".into(),
            batch_size: "32".into(),
            learning_rate: "0.001".into(),
            optimizer: "adam".into(),
            seed: "0".into(),
            device: "auto".into(),
            prune_method: "global_magnitude".into(),
            fine_tune_epochs: "1".into(),
            ..Self::default()
        }
    }

    /// The submission the form describes: the train run, then one prune run per sparsity,
    /// a quantized copy of every model when asked, and an evaluation of every model when asked.
    pub fn to_submission(&self) -> Result<RunSubmission, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut params = json!({ "dataset": self.dataset.trim() });
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                params[key] = value;
            }
        };
        set("train_range", range(&mut errors, "train_range", &self.train_start, &self.train_end).map(Value::from));
        set(
            "validation_range",
            range(&mut errors, "validation_range", &self.validation_start, &self.validation_end).map(Value::from),
        );
        set("epochs", integer(&mut errors, "epochs", &self.epochs).map(Value::from));
        set("batch_size", integer(&mut errors, "batch_size", &self.batch_size).map(Value::from));
        set("learning_rate", number(&mut errors, "learning_rate", &self.learning_rate).map(Value::from));
        set("optimizer", choice(&mut errors, "optimizer", &self.optimizer, &["adam", "sgd"]));
        set("seed", integer(&mut errors, "seed", &self.seed).map(Value::from));
        set("device", choice(&mut errors, "device", &self.device, &["auto", "cpu", "cuda"]));

        let method = choice(
            &mut errors,
            "prune_method",
            &self.prune_method,
            &["global_magnitude", "layer_magnitude", "structured"],
        );
        let fine_tune_epochs = integer(&mut errors, "fine_tune_epochs", &self.fine_tune_epochs);
        let mut sparsities = Vec::new();
        for text in self.prune_sparsities.split(',').map(str::trim).filter(|text| !text.is_empty()) {
            match text.parse::<f64>() {
                Ok(sparsity) if (0.0..=MAX_SPARSITY).contains(&sparsity) => sparsities.push(sparsity),
                _ => errors.add("prune_sparsities", format!("each must be a number between 0 and {MAX_SPARSITY}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let (quantize, evaluate) = (self.quantize == "on", self.evaluate == "on");
        let model_children = |children: &mut Vec<RunSubmission>| {
            if evaluate {
                children.push(child(RunKind::Evaluate, json!({}), Vec::new()));
            }
            if quantize {
                let measured =
                    if evaluate { vec![child(RunKind::Evaluate, json!({}), Vec::new())] } else { Vec::new() };
                children.push(child(RunKind::Quantize, json!({}), measured));
            }
        };
        let mut children = Vec::new();
        model_children(&mut children);
        for sparsity in sparsities {
            let mut prune = json!({ "sparsity": sparsity });
            if let Some(method) = &method {
                prune["method"] = method.clone();
            }
            if let Some(epochs) = fine_tune_epochs {
                prune["fine_tune"] = json!({ "epochs": epochs });
            }
            let mut grandchildren = Vec::new();
            model_children(&mut grandchildren);
            children.push(child(RunKind::Prune, prune, grandchildren));
        }
        let name = Some(self.name.trim().to_owned()).filter(|name| !name.is_empty());
        Ok(RunSubmission { name, children, ..child(RunKind::Train, params, Vec::new()) })
    }

    /// The form field an error about `field` of the submission belongs next to.
    pub fn field_of(field: &str) -> &str {
        if !field.starts_with("children") {
            return field.strip_prefix("params.").unwrap_or(field);
        }
        let last = field.rsplit('.').next().unwrap_or(field);
        match last {
            "sparsity" => "prune_sparsities",
            "method" => "prune_method",
            _ if field.contains("fine_tune") => "fine_tune_epochs",
            _ => "pipeline",
        }
    }
}

fn child(kind: RunKind, params: Value, children: Vec<RunSubmission>) -> RunSubmission {
    RunSubmission {
        kind,
        name: None,
        params,
        parent_run_id: None,
        queue: None,
        priority: None,
        time_limit_seconds: None,
        children,
    }
}

fn integer(errors: &mut FieldErrors, field: &str, text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.parse().map_err(|_| errors.add(field, "must be a whole number")).ok()
}

fn number(errors: &mut FieldErrors, field: &str, text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.parse().map_err(|_| errors.add(field, "must be a number")).ok()
}

fn choice(errors: &mut FieldErrors, field: &str, text: &str, options: &[&str]) -> Option<Value> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if options.contains(&text) {
        Some(Value::from(text))
    } else {
        errors.add(field, format!("must be one of {}", options.join(", ")));
        None
    }
}

fn range(errors: &mut FieldErrors, field: &str, start: &str, end: &str) -> Option<Vec<i64>> {
    match (integer(errors, field, start), integer(errors, field, end)) {
        (Some(start), Some(end)) => Some(vec![start, end]),
        (None, None) => None,
        _ => {
            errors.add(field, "give both start and end, or neither for the default split");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_filled_form_and_names_each_bad_field() {
        let mut form = TrainForm::defaults();
        form.train_start = "0".into();
        form.train_end = "100".into();
        let submission = form.to_submission().expect("valid form");
        assert_eq!(submission.params["train_range"], json!([0, 100]));
        assert_eq!(submission.params["optimizer"], "adam");
        assert!(submission.children.is_empty());

        form.epochs = "two".into();
        form.validation_start = "5".into();
        form.device = "tpu".into();
        form.prune_sparsities = "0.5, 1.5".into();
        let errors = form.to_submission().expect_err("invalid form");
        assert_eq!(errors.of("epochs"), Some("must be a whole number"));
        assert!(errors.of("validation_range").is_some());
        assert!(errors.of("device").is_some());
        assert!(errors.of("prune_sparsities").is_some());
        assert_eq!(errors.of("seed"), None);
    }

    #[test]
    fn a_pipeline_prunes_at_each_sparsity_then_quantizes_and_evaluates_every_model() {
        let mut form = TrainForm::defaults();
        form.prune_sparsities = "0.5, 0.75,0.9".into();
        form.quantize = "on".into();
        form.evaluate = "on".into();
        let submission = form.to_submission().expect("valid form");
        let kinds = |runs: &[RunSubmission]| runs.iter().map(|run| run.kind).collect::<Vec<_>>();
        use RunKind::{Evaluate, Prune, Quantize};
        assert_eq!(kinds(&submission.children), [Evaluate, Quantize, Prune, Prune, Prune]);
        let prune = &submission.children[4];
        assert_eq!(prune.params["sparsity"], 0.9);
        assert_eq!(kinds(&prune.children), [Evaluate, Quantize]);
        assert_eq!(kinds(&prune.children[1].children), [Evaluate]);
        assert_eq!(TrainForm::field_of("children[2].params.sparsity"), "prune_sparsities");
        assert_eq!(TrainForm::field_of("params.epochs"), "epochs");
    }
}
