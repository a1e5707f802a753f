//! The train-run form: every field arrives as text, is parsed into a `TrainRequest`, and on
//! error the page is shown again with the user's text and a message next to each field.
use cairn_domain::{Device, Optimizer, TrainRequest};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub csrf: String,
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
            ..Self::default()
        }
    }

    pub fn to_request(&self) -> Result<TrainRequest, FieldErrors> {
        let mut errors = FieldErrors::default();
        let train_range = range(&mut errors, "train_range", &self.train_start, &self.train_end);
        let validation_range = range(&mut errors, "validation_range", &self.validation_start, &self.validation_end);
        let request = TrainRequest {
            dataset: self.dataset.trim().to_owned(),
            train_range,
            validation_range,
            epochs: integer(&mut errors, "epochs", &self.epochs),
            batch_size: integer(&mut errors, "batch_size", &self.batch_size),
            learning_rate: number(&mut errors, "learning_rate", &self.learning_rate),
            optimizer: choice(
                &mut errors,
                "optimizer",
                &self.optimizer,
                &[("adam", Optimizer::Adam), ("sgd", Optimizer::Sgd)],
            ),
            seed: integer(&mut errors, "seed", &self.seed),
            device: choice(
                &mut errors,
                "device",
                &self.device,
                &[("auto", Device::Auto), ("cpu", Device::Cpu), ("cuda", Device::Cuda)],
            ),
            log_every: None,
        };
        if errors.is_empty() { Ok(request) } else { Err(errors) }
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

fn choice<T: Copy>(errors: &mut FieldErrors, field: &str, text: &str, options: &[(&str, T)]) -> Option<T> {
    if text.trim().is_empty() {
        return None;
    }
    let found = options.iter().find(|(name, _)| *name == text.trim()).map(|(_, value)| *value);
    if found.is_none() {
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        errors.add(field, format!("must be one of {}", names.join(", ")));
    }
    found
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
        let request = form.to_request().expect("valid form");
        assert_eq!(request.train_range, Some(vec![0, 100]));
        assert_eq!(request.optimizer, Some(Optimizer::Adam));

        form.epochs = "two".into();
        form.validation_start = "5".into();
        form.device = "tpu".into();
        let errors = form.to_request().expect_err("invalid form");
        assert_eq!(errors.of("epochs"), Some("must be a whole number"));
        assert!(errors.of("validation_range").is_some());
        assert!(errors.of("device").is_some());
        assert_eq!(errors.of("seed"), None);
    }
}
