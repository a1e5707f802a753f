//! Jobs that use models without changing them: evaluation (of one model or the average of
//! several) and prediction.
use super::{Job, Written};
use crate::{
    checkpoint,
    evaluation::{self, Ensemble},
    model::{self, Model, TensorData},
    training::Progress,
};
use cairn_datasets::idx;
use cairn_domain::{EvaluateParams, PredictInput, PredictParams};
use std::fmt::Write;
use tch::Kind;

/// Measures the models of `job.inputs.models` averaged (one model is measured as itself):
/// quality, per-class precision and recall, the confusion matrix (an artifact), latency,
/// size and accuracy under input noise.
pub fn evaluate(job: &Job, params: &EvaluateParams, progress: &mut impl Progress) -> anyhow::Result<Written> {
    let device = job.device(params.device)?;
    let data = job.tensors(&params.dataset, params.range, device)?;
    let models: Vec<Model> =
        job.inputs.models.iter().map(|path| checkpoint::load(path, device)).collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!models.is_empty(), "nothing to evaluate: no checkpoint");
    let model_bytes: u64 =
        job.inputs.models.iter().map(|path| std::fs::metadata(path).map(|m| m.len())).sum::<std::io::Result<_>>()?;
    let nonzero_parameters: i64 = models.iter().map(Model::nonzero_parameters).sum();
    let count = models.len();
    let ensemble = Ensemble(models.into_iter().map(|model| model.cnn).collect());

    let started = std::time::Instant::now();
    let logits = evaluation::logits(&ensemble, &data.images);
    let quality = evaluation::quality(&logits, &data.labels);
    let samples_per_second = data.len() as f64 / started.elapsed().as_secs_f64();
    for (key, value) in [
        ("accuracy", quality.accuracy),
        ("cross_entropy", quality.cross_entropy),
        ("mse", quality.mse),
        ("samples_per_second", samples_per_second),
        ("model_bytes", model_bytes as f64),
        ("nonzero_parameters", nonzero_parameters as f64),
        ("models", count as f64),
    ] {
        progress.metric(key, 0, value);
    }
    for (batch, runs) in [(1, 100), (64, 30)] {
        let latency = evaluation::latency(&ensemble, &data, batch, runs);
        progress.metric(format!("latency_ms/batch_{batch}/median"), 0, latency.median_ms);
        progress.metric(format!("latency_ms/batch_{batch}/p95"), 0, latency.p95_ms);
    }
    for std in [0.1, 0.2, 0.3] {
        progress.metric(
            format!("noise_accuracy/{std}"),
            0,
            evaluation::noisy_accuracy(&ensemble, &data, std, params.seed),
        );
    }
    for (class, (precision, recall)) in quality.precision.iter().zip(&quality.recall).enumerate() {
        progress.metric(format!("precision/{class}"), 0, *precision);
        progress.metric(format!("recall/{class}"), 0, *recall);
    }
    tracing::info!(accuracy = quality.accuracy, cross_entropy = quality.cross_entropy, models = count, "evaluated");
    let confusion = serde_json::to_vec(&serde_json::json!({
        "rows": "true class", "columns": "predicted class", "matrix": quality.confusion,
    }))?;
    let saved = checkpoint::save_bytes(&confusion, &job.artifact_dir, job.run_id, "confusion_matrix.json")?;
    Ok(vec![("confusion_matrix", saved)])
}

/// Writes `predictions.csv`: for each image its index (in the dataset, or in the upload), its
/// label when known, the predicted class and the ten class probabilities.
pub fn predict(job: &Job, params: &PredictParams, progress: &mut impl Progress) -> anyhow::Result<Written> {
    let device = job.device(params.device)?;
    let model = checkpoint::load(job.parent()?, device)?;
    let (images, labels, first_index) = match &params.input {
        PredictInput::Dataset { dataset, range } => {
            let data: TensorData = job.tensors(dataset, *range, device)?;
            (data.images, Some(data.labels), range.start)
        }
        PredictInput::Upload { .. } => {
            let path = job.inputs.upload.as_ref().ok_or_else(|| anyhow::anyhow!("the upload's file is missing"))?;
            let file = std::fs::File::open(path)?;
            let bytes = idx::read_images(&mut idx::decompressing(file)?)?;
            (model::images(&bytes, device), None, 0)
        }
    };
    let probabilities = evaluation::logits(&model.cnn, &images).softmax(-1, Kind::Double).to_device(tch::Device::Cpu);
    let predicted = probabilities.argmax(-1, false);
    let rows = probabilities.size()[0];
    let probabilities: Vec<f64> = Vec::try_from(&probabilities.flatten(0, -1))?;
    let predicted: Vec<i64> = Vec::try_from(&predicted)?;
    let labels: Option<Vec<i64>> = labels.map(|l| Vec::try_from(&l.to_device(tch::Device::Cpu))).transpose()?;

    let classes = model::CLASSES as usize;
    let mut csv = String::from("index,label,predicted");
    for class in 0..classes {
        write!(csv, ",p{class}")?;
    }
    csv.push('\n');
    for row in 0..rows as usize {
        let label = labels.as_ref().map(|labels| labels[row].to_string()).unwrap_or_default();
        write!(csv, "{},{label},{}", first_index + row, predicted[row])?;
        for p in &probabilities[row * classes..(row + 1) * classes] {
            write!(csv, ",{p:.6}")?;
        }
        csv.push('\n');
    }
    progress.metric("samples", 0, rows as f64);
    if let Some(labels) = &labels {
        let correct = labels.iter().zip(&predicted).filter(|(label, predicted)| label == predicted).count();
        progress.metric("accuracy", 0, correct as f64 / rows.max(1) as f64);
    }
    let saved = checkpoint::save_bytes(csv.as_bytes(), &job.artifact_dir, job.run_id, "predictions.csv")?;
    tracing::info!(samples = rows, "predictions written");
    Ok(vec![("predictions", saved)])
}
