//! Measuring a trained model, or the average of several: classification quality, speed,
//! size and robustness to noise.
use crate::model::{Cnn, TensorData};
use std::time::Instant;
use tch::{Kind, Tensor, nn::ModuleT};

/// One model, or several whose softmax outputs are averaged. Its output is the model's
/// logits, or the log of the averaged probabilities (which softmax maps back to them), so
/// everything below measures one model and an ensemble alike.
#[derive(Debug)]
pub struct Ensemble(pub Vec<Cnn>);

impl ModuleT for Ensemble {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.0.as_slice() {
            [model] => model.forward_t(xs, train),
            models => {
                let probabilities: Vec<Tensor> =
                    models.iter().map(|model| model.forward_t(xs, train).softmax(-1, Kind::Float)).collect();
                Tensor::stack(&probabilities, 0).mean_dim([0].as_slice(), false, Kind::Float).log()
            }
        }
    }
}

/// Quality of predictions against labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    pub accuracy: f64,
    /// Mean negative log-likelihood of the true class.
    pub cross_entropy: f64,
    /// Mean over samples and classes of (softmax output - one-hot label)^2.
    pub mse: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<i64>>,
    /// Per class; 0 for a class never predicted (precision) or absent (recall).
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
}

/// Median and 95th percentile of the time one forward pass takes, warm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub median_ms: f64,
    pub p95_ms: f64,
}

pub fn quality(logits: &Tensor, labels: &Tensor) -> Quality {
    let _no_grad = tch::no_grad_guard();
    let (n, classes) = (logits.size()[0], logits.size()[1]);
    let log_probs = logits.log_softmax(-1, Kind::Double);
    let cross_entropy = -log_probs.gather(1, &labels.unsqueeze(1), false).mean(Kind::Double).double_value(&[]);
    let one_hot = labels.one_hot(classes).to_kind(Kind::Double);
    let mse = (log_probs.exp() - one_hot).square().mean(Kind::Double).double_value(&[]);
    let predicted = logits.argmax(-1, false);
    let flat = (labels * classes + &predicted).bincount::<Tensor>(None, classes * classes);
    let counts: Vec<i64> = Vec::<i64>::try_from(&flat.to_kind(Kind::Int64)).unwrap_or_default();
    let confusion: Vec<Vec<i64>> = counts.chunks(classes as usize).map(<[i64]>::to_vec).collect();
    let ratio = |hits: i64, total: i64| if total == 0 { 0.0 } else { hits as f64 / total as f64 };
    let correct: i64 = (0..classes as usize).map(|k| confusion[k][k]).sum();
    let precision =
        (0..classes as usize).map(|k| ratio(confusion[k][k], confusion.iter().map(|row| row[k]).sum())).collect();
    let recall = (0..classes as usize).map(|k| ratio(confusion[k][k], confusion[k].iter().sum())).collect();
    Quality { accuracy: ratio(correct, n), cross_entropy, mse, confusion, precision, recall }
}

/// The model's logits for every image, in batches, without gradients.
pub fn logits(model: &impl ModuleT, images: &Tensor) -> Tensor {
    const BATCH: i64 = 1_000;
    let _no_grad = tch::no_grad_guard();
    let n = images.size()[0];
    let chunks: Vec<Tensor> = (0..n)
        .step_by(BATCH as usize)
        .map(|start| model.forward_t(&images.narrow(0, start, BATCH.min(n - start)), false))
        .collect();
    Tensor::cat(&chunks, 0)
}

/// Times `runs` forward passes of `batch` images after a few untimed ones.
pub fn latency(model: &impl ModuleT, data: &TensorData, batch: i64, runs: usize) -> Latency {
    let _no_grad = tch::no_grad_guard();
    let input = data.images.narrow(0, 0, batch.min(data.len()));
    let pass = || {
        // Reading a value waits for the device, so the time covers the whole pass.
        let _ = model.forward_t(&input, false).sum(Kind::Float).double_value(&[]);
    };
    for _ in 0..5 {
        pass();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            pass();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Latency { median_ms: at(0.5), p95_ms: at(0.95) }
}

/// Accuracy with Gaussian noise of standard deviation `std` added to the inputs.
pub fn noisy_accuracy(model: &impl ModuleT, data: &TensorData, std: f64, seed: u64) -> f64 {
    tch::manual_seed(seed as i64);
    let noisy = &data.images + data.images.randn_like() * std;
    quality(&logits(model, &noisy), &data.labels).accuracy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_matches_values_computed_by_hand() {
        // Three classes, four samples. Logits chosen so the softmax is easy to write down.
        let logits = Tensor::from_slice(&[
            2.0f32, 0.0, 0.0, // true 0, predicted 0
            0.0, 2.0, 0.0, // true 1, predicted 1
            0.0, 2.0, 0.0, // true 2, predicted 1
            0.0, 0.0, 0.0, // true 2, predicted 0 (ties go to the first)
        ])
        .view([4, 3]);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 2]);
        let q = quality(&logits, &labels);

        let e2 = 2f64.exp();
        let (high, low) = (e2 / (e2 + 2.0), 1.0 / (e2 + 2.0));
        let third = 1.0f64 / 3.0;
        assert_eq!(q.accuracy, 0.5);
        let expected_ce = (-high.ln() - high.ln() - low.ln() - third.ln()) / 4.0;
        assert!((q.cross_entropy - expected_ce).abs() < 1e-12, "{} vs {expected_ce}", q.cross_entropy);
        // Per sample: squared errors of the three probabilities against the one-hot label.
        let hit = (high - 1.0).powi(2) + 2.0 * low.powi(2);
        let miss = high.powi(2) + low.powi(2) + (low - 1.0).powi(2);
        let uniform = 2.0 * third.powi(2) + (third - 1.0).powi(2);
        let expected_mse = (hit + hit + miss + uniform) / 12.0;
        assert!((q.mse - expected_mse).abs() < 1e-12, "{} vs {expected_mse}", q.mse);
        assert_eq!(q.confusion, vec![vec![1, 0, 0], vec![0, 1, 0], vec![1, 1, 0]]);
        assert_eq!(q.precision, vec![0.5, 0.5, 0.0]);
        assert_eq!(q.recall, vec![1.0, 1.0, 0.0]);
    }

    #[test]
    fn an_ensemble_averages_the_probabilities_of_its_models() {
        let model = |seed| crate::model::Model::initial(seed, tch::Device::Cpu).cnn;
        let images = Tensor::rand([3, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        let _no_grad = tch::no_grad_guard();
        let (a, b) = (model(1).forward_t(&images, false), model(2).forward_t(&images, false));
        let expected = (a.softmax(-1, Kind::Float) + b.softmax(-1, Kind::Float)) / 2.0;
        let averaged = Ensemble(vec![model(1), model(2)]).forward_t(&images, false).softmax(-1, Kind::Float);
        assert!(averaged.allclose(&expected, 1e-6, 1e-7, false));
        let single = Ensemble(vec![model(1)]).forward_t(&images, false);
        assert!(single.equal(&a), "one model is measured by its own logits");
    }

    #[test]
    fn noise_lowers_accuracy_reproducibly() {
        let params = crate::training::tests::small_params(1);
        let data = crate::training::tests::tensors(&params);
        let mut recorded = crate::training::tests::Recorded::default();
        let (trained, _) =
            crate::training::tests::finished(crate::training::tests::fit(&params, &data, None, &mut recorded));
        let val_data = &data.1;
        let dir = std::env::temp_dir().join(format!("cairn-eval-{}", std::process::id()));
        let saved = crate::checkpoint::save(&trained, &dir, 1, "model.safetensors").expect("saves");
        let loaded = crate::checkpoint::load(&dir.join(saved.path), tch::Device::Cpu).expect("loads");
        let model = &loaded.cnn;
        let clean = quality(&logits(model, &val_data.images), &val_data.labels).accuracy;
        let noisy = noisy_accuracy(model, val_data, 0.3, 1);
        assert_eq!(noisy, noisy_accuracy(model, val_data, 0.3, 1));
        assert!(noisy < clean, "noise 0.3: {noisy} vs clean {clean}");
        assert_eq!(loaded.nonzero_parameters(), 32 * 9 + 32 + 64 * 32 * 9 + 64 + 1600 * 64 + 64 + 64 * 10 + 10);
        let latency = latency(model, val_data, 64, 10);
        assert!(latency.median_ms > 0.0 && latency.p95_ms >= latency.median_ms);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
