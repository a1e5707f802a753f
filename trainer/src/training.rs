//! The training loop. It knows nothing of Postgres or Redis: it reports through `Progress`,
//! which the worker connects to the metric writer and the cancel flag.
use crate::model::{Cnn, TensorData, evaluate};
use cairn_domain::{Optimizer, TrainParams};
use std::time::Instant;
use tch::{Device, Kind, Tensor, nn, nn::ModuleT, nn::OptimizerConfig};

/// Metric keys written by training. Per-step keys use the global step, per-epoch keys the
/// epoch number (1-based).
pub mod keys {
    pub const TRAIN_LOSS: &str = "train_loss";
    pub const EPOCH_TRAIN_LOSS: &str = "epoch_train_loss";
    pub const VAL_LOSS: &str = "val_loss";
    pub const VAL_ACCURACY: &str = "val_accuracy";
    pub const EPOCH_SECONDS: &str = "epoch_seconds";
    pub const SAMPLES_PER_SECOND: &str = "samples_per_second";
}

/// Where training reports to.
pub trait Progress {
    fn metric(&mut self, key: &'static str, step: u64, value: f64);
    /// Asked between steps; `true` ends training as cancelled.
    fn should_stop(&self) -> bool;
}

pub enum Outcome {
    Finished { model: nn::VarStore, last: EpochSummary },
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochSummary {
    pub epoch: u32,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

pub fn train(
    params: &TrainParams,
    train_data: &TensorData,
    val_data: &TensorData,
    device: Device,
    progress: &mut impl Progress,
) -> anyhow::Result<Outcome> {
    tch::manual_seed(params.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = Cnn::new(&vs.root());
    let lr = params.learning_rate;
    let mut optimizer = match params.optimizer {
        Optimizer::Adam => nn::Adam::default().build(&vs, lr)?,
        Optimizer::Sgd => nn::Sgd::default().build(&vs, lr)?,
    };
    let n = train_data.len();
    let batch = i64::from(params.batch_size);
    let log_every = u64::from(params.log_every);
    let mut step: u64 = 0;
    let mut last = None;
    for epoch in 1..=params.epochs {
        let started = Instant::now();
        let order = Tensor::randperm(n, (Kind::Int64, device));
        // Losses stay on the device until they are logged: reading one forces a sync.
        let mut epoch_loss = Tensor::zeros([], (Kind::Float, device));
        let mut window_loss = Tensor::zeros([], (Kind::Float, device));
        let mut window_steps = 0u64;
        let mut start = 0;
        while start < n {
            if progress.should_stop() {
                return Ok(Outcome::Stopped);
            }
            let size = batch.min(n - start);
            let index = order.narrow(0, start, size);
            let images = train_data.images.index_select(0, &index);
            let labels = train_data.labels.index_select(0, &index);
            let loss = model.forward_t(&images, true).cross_entropy_for_logits(&labels);
            optimizer.backward_step(&loss);
            let loss = loss.detach();
            epoch_loss += &loss * (size as f64);
            window_loss += &loss;
            window_steps += 1;
            step += 1;
            start += size;
            if step % log_every == 0 {
                let mean = window_loss.double_value(&[]) / window_steps as f64;
                progress.metric(keys::TRAIN_LOSS, step, mean);
                tracing::info!(epoch, step, train.loss = mean, "training");
                let _ = window_loss.zero_();
                window_steps = 0;
            }
        }
        let train_loss = epoch_loss.double_value(&[]) / n as f64;
        let seconds = started.elapsed().as_secs_f64();
        let eval = evaluate(&model, val_data);
        let epoch_step = u64::from(epoch);
        progress.metric(keys::EPOCH_TRAIN_LOSS, epoch_step, train_loss);
        progress.metric(keys::VAL_LOSS, epoch_step, eval.loss);
        progress.metric(keys::VAL_ACCURACY, epoch_step, eval.accuracy);
        progress.metric(keys::EPOCH_SECONDS, epoch_step, seconds);
        progress.metric(keys::SAMPLES_PER_SECOND, epoch_step, n as f64 / seconds);
        tracing::info!(
            epoch,
            epochs = params.epochs,
            step,
            train.loss = train_loss,
            val.loss = eval.loss,
            val.accuracy = eval.accuracy,
            epoch.duration_ms = (seconds * 1e3) as u64,
            "epoch finished"
        );
        last = Some(EpochSummary { epoch, train_loss, val_loss: eval.loss, val_accuracy: eval.accuracy, seconds });
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("a run has at least one epoch"))?;
    Ok(Outcome::Finished { model: vs, last })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_datasets::synthetic;
    use cairn_domain::{SampleRange, TrainRequest};

    #[derive(Default)]
    pub(crate) struct Recorded {
        pub points: Vec<(&'static str, u64, f64)>,
        pub stop_after: Option<usize>,
    }

    impl Progress for Recorded {
        fn metric(&mut self, key: &'static str, step: u64, value: f64) {
            self.points.push((key, step, value));
        }

        fn should_stop(&self) -> bool {
            self.stop_after.is_some_and(|limit| self.points.len() >= limit)
        }
    }

    pub(crate) fn small_params(epochs: i64) -> TrainParams {
        let request: TrainRequest = serde_json::from_value(serde_json::json!({
            "dataset": "synthetic-digits", "train_range": [0, 1200], "validation_range": [9000, 9400],
            "epochs": epochs, "batch_size": 32, "seed": 3, "log_every": 10
        }))
        .expect("request");
        TrainParams::validate(&request, synthetic::LEN).expect("valid")
    }

    pub(crate) fn tensors(params: &TrainParams) -> (TensorData, TensorData) {
        let load = |range: SampleRange| TensorData::new(&synthetic::samples(range), Device::Cpu);
        (load(params.train_range), load(params.validation_range))
    }

    fn finished(outcome: Outcome) -> (nn::VarStore, EpochSummary) {
        match outcome {
            Outcome::Finished { model, last } => (model, last),
            Outcome::Stopped => panic!("training stopped early"),
        }
    }

    #[test]
    fn learns_synthetic_digits_and_logs_every_metric() {
        let params = small_params(2);
        let (train_data, val_data) = tensors(&params);
        let mut recorded = Recorded::default();
        let (_, last) = finished(train(&params, &train_data, &val_data, Device::Cpu, &mut recorded).expect("trains"));
        assert!(last.val_accuracy > 0.8, "validation accuracy {} after 2 epochs", last.val_accuracy);
        let count = |key| recorded.points.iter().filter(|(k, _, _)| *k == key).count();
        // 1200 / 32 = 38 steps per epoch, 76 in all, logged every 10 steps.
        assert_eq!(count(keys::TRAIN_LOSS), 7);
        for key in [keys::EPOCH_TRAIN_LOSS, keys::VAL_LOSS, keys::VAL_ACCURACY, keys::EPOCH_SECONDS] {
            assert_eq!(count(key), 2, "{key}");
        }
        let first_loss = recorded.points.iter().find(|(k, _, _)| *k == keys::TRAIN_LOSS).expect("loss").2;
        assert!(last.train_loss < first_loss, "loss went from {first_loss} to {}", last.train_loss);
    }

    #[test]
    fn the_same_seed_gives_the_same_metrics() {
        let params = small_params(1);
        let (train_data, val_data) = tensors(&params);
        let run = || {
            let mut recorded = Recorded::default();
            train(&params, &train_data, &val_data, Device::Cpu, &mut recorded).expect("trains");
            recorded
                .points
                .into_iter()
                .filter(|(key, _, _)| *key != keys::EPOCH_SECONDS && *key != keys::SAMPLES_PER_SECOND)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn stops_between_steps_when_asked() {
        let params = small_params(2);
        let (train_data, val_data) = tensors(&params);
        let mut recorded = Recorded { stop_after: Some(1), ..Default::default() };
        let outcome = train(&params, &train_data, &val_data, Device::Cpu, &mut recorded).expect("trains");
        assert!(matches!(outcome, Outcome::Stopped));
        assert_eq!(recorded.points.len(), 1);
    }
}
