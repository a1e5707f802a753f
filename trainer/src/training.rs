//! The training loop. It knows nothing of Postgres or Redis: it reports through `Progress`,
//! which the worker connects to the metric writer, the checkpoint store and the stop flags.
//!
//! A run can stop after any step and resume from its last checkpoint with the same result as
//! if it had never stopped: the order of samples in an epoch comes from the seed and the
//! epoch alone, and a checkpoint holds the weights, the optimizer's state, the position in
//! the epoch and the loss sums in progress.
use crate::{
    model::{Model, TensorData, evaluate},
    optim::Optimizer,
    pruning::Masks,
};
use cairn_domain::TrainParams;
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::time::Instant;
use tch::{Device, Kind, Tensor, nn, nn::ModuleT};

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

/// Why training should stop before its last epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop and keep nothing more (cancelled, or the lease is gone).
    Now,
    /// Save a checkpoint first, so another attempt can continue from here.
    AfterCheckpoint,
}

/// Where training reports to.
pub trait Progress {
    fn metric(&mut self, key: impl Into<Cow<'static, str>>, step: u64, value: f64);
    /// Asked between steps.
    fn stop(&self) -> Option<Stop>;
    /// Persists a checkpoint to resume from; called at the end of every epoch, and before
    /// stopping with `Stop::AfterCheckpoint`.
    fn checkpoint(&mut self, checkpoint: &Checkpoint<'_>) -> anyhow::Result<()>;
}

/// Where training is: the epoch (1-based), the next batch in it, the global step, and the
/// loss sums of the epoch and of the current logging window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    pub epoch: u32,
    pub batch: i64,
    pub step: u64,
    pub epoch_loss_sum: f64,
    pub window_loss_sum: f64,
    pub window_steps: u64,
}

/// What a checkpoint holds.
pub struct Checkpoint<'a> {
    pub model: &'a nn::VarStore,
    pub optimizer: &'a Optimizer,
    pub position: Position,
}

impl Checkpoint<'_> {
    /// Every tensor of the checkpoint, by name: the model's variables under their own names.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let p = &self.position;
        let mut tensors: Vec<(String, Tensor)> = self.model.variables().into_iter().collect();
        tensors.extend(self.optimizer.state());
        for (name, value) in [
            ("epoch", i64::from(p.epoch)),
            ("batch", p.batch),
            ("step", p.step as i64),
            ("window_steps", p.window_steps as i64),
        ] {
            tensors.push((format!("position.{name}"), Tensor::from(value)));
        }
        for (name, value) in [("epoch_loss_sum", p.epoch_loss_sum), ("window_loss_sum", p.window_loss_sum)] {
            tensors.push((format!("position.{name}"), Tensor::from(value)));
        }
        tensors
    }
}

/// A checkpoint read back: tensors by name.
pub struct Resume(pub Vec<(String, Tensor)>);

impl Resume {
    fn find(&self, name: &str) -> Option<Tensor> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone())
    }

    fn position(&self) -> anyhow::Result<Position> {
        let int = |name: &str| {
            self.find(&format!("position.{name}"))
                .map(|t| t.int64_value(&[]))
                .ok_or_else(|| anyhow::anyhow!("the checkpoint has no position.{name}"))
        };
        let float = |name: &str| {
            self.find(&format!("position.{name}"))
                .map(|t| t.double_value(&[]))
                .ok_or_else(|| anyhow::anyhow!("the checkpoint has no position.{name}"))
        };
        Ok(Position {
            epoch: int("epoch")? as u32,
            batch: int("batch")?,
            step: int("step")? as u64,
            epoch_loss_sum: float("epoch_loss_sum")?,
            window_loss_sum: float("window_loss_sum")?,
            window_steps: int("window_steps")? as u64,
        })
    }
}

pub enum Outcome {
    Finished { model: Box<Model>, last: EpochSummary },
    Stopped,
}

/// What training starts from: fresh weights, or a pruned model whose masks keep its pruned
/// weights at exactly zero throughout.
pub struct Start {
    pub model: Model,
    pub masks: Option<Masks>,
}

impl Start {
    pub fn fresh(seed: u64, device: Device) -> Self {
        Self { model: Model::initial(seed, device), masks: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochSummary {
    pub epoch: u32,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

/// The order of the training samples in `epoch`: a function of the seed and the epoch only,
/// so a resumed run sees the same batches.
pub fn epoch_order(seed: u64, epoch: u32, n: i64, device: Device) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(epoch));
    let mut order: Vec<i64> = (0..n).collect();
    order.shuffle(&mut rng);
    Tensor::from_slice(&order).to_device(device)
}

/// Trains `start.model` for `params.epochs` epochs (zero leaves it as it is).
pub fn train(
    params: &TrainParams,
    start: Start,
    train_data: &TensorData,
    val_data: &TensorData,
    resume: Option<Resume>,
    progress: &mut impl Progress,
) -> anyhow::Result<Outcome> {
    let Start { model: trained, masks } = start;
    let (vs, model, device) = (&trained.vs, &trained.cnn, trained.vs.device());
    let mut optimizer = Optimizer::new(params.optimizer, vs, params.learning_rate);
    let mut position = Position { epoch: 1, ..Position::default() };
    if let Some(resume) = &resume {
        restore_model(vs, resume)?;
        optimizer.load_state(|name| resume.find(name).map(|t| t.to_device(device)))?;
        position = resume.position()?;
        tracing::info!(epoch = position.epoch, step = position.step, "resuming from checkpoint");
    }
    let n = train_data.len();
    let batch = i64::from(params.batch_size);
    let batches = (n + batch - 1) / batch;
    let log_every = u64::from(params.log_every);
    let mut last = None;
    while position.epoch <= params.epochs {
        let epoch = position.epoch;
        let started = Instant::now();
        let order = epoch_order(params.seed, epoch, n, device);
        // Losses stay on the device until they are logged: reading one forces a sync.
        let mut epoch_loss = Tensor::from(position.epoch_loss_sum).to_kind(Kind::Float).to_device(device);
        let mut window_loss = Tensor::from(position.window_loss_sum).to_kind(Kind::Float).to_device(device);
        while position.batch < batches {
            match progress.stop() {
                Some(Stop::Now) => return Ok(Outcome::Stopped),
                Some(Stop::AfterCheckpoint) => {
                    position.epoch_loss_sum = epoch_loss.double_value(&[]);
                    position.window_loss_sum = window_loss.double_value(&[]);
                    progress.checkpoint(&Checkpoint { model: vs, optimizer: &optimizer, position })?;
                    return Ok(Outcome::Stopped);
                }
                None => {}
            }
            let start = position.batch * batch;
            let size = batch.min(n - start);
            let index = order.narrow(0, start, size);
            let images = train_data.images.index_select(0, &index);
            let labels = train_data.labels.index_select(0, &index);
            let loss = model.forward_t(&images, true).cross_entropy_for_logits(&labels);
            optimizer.backward_step(&loss);
            if let Some(masks) = &masks {
                masks.apply(vs);
            }
            let loss = loss.detach();
            epoch_loss += &loss * (size as f64);
            window_loss += &loss;
            position.window_steps += 1;
            position.step += 1;
            position.batch += 1;
            if position.step.is_multiple_of(log_every) {
                let mean = window_loss.double_value(&[]) / position.window_steps as f64;
                progress.metric(keys::TRAIN_LOSS, position.step, mean);
                tracing::info!(epoch, step = position.step, train.loss = mean, "training");
                let _ = window_loss.zero_();
                position.window_steps = 0;
            }
        }
        let train_loss = epoch_loss.double_value(&[]) / n as f64;
        let seconds = started.elapsed().as_secs_f64();
        let eval = evaluate(model, val_data);
        let epoch_step = u64::from(epoch);
        progress.metric(keys::EPOCH_TRAIN_LOSS, epoch_step, train_loss);
        progress.metric(keys::VAL_LOSS, epoch_step, eval.loss);
        progress.metric(keys::VAL_ACCURACY, epoch_step, eval.accuracy);
        progress.metric(keys::EPOCH_SECONDS, epoch_step, seconds);
        progress.metric(keys::SAMPLES_PER_SECOND, epoch_step, n as f64 / seconds);
        tracing::info!(
            epoch,
            epochs = params.epochs,
            step = position.step,
            train.loss = train_loss,
            val.loss = eval.loss,
            val.accuracy = eval.accuracy,
            epoch.duration_ms = (seconds * 1e3) as u64,
            "epoch finished"
        );
        last = Some(EpochSummary { epoch, train_loss, val_loss: eval.loss, val_accuracy: eval.accuracy, seconds });
        // The logging window carries over epochs, as in an uninterrupted run.
        position = Position {
            epoch: epoch + 1,
            batch: 0,
            step: position.step,
            epoch_loss_sum: 0.0,
            window_loss_sum: window_loss.double_value(&[]),
            window_steps: position.window_steps,
        };
        if position.epoch <= params.epochs {
            progress.checkpoint(&Checkpoint { model: vs, optimizer: &optimizer, position })?;
        }
    }
    let last = match last {
        Some(last) => last,
        // No epoch left to train (fine-tuning of zero epochs): measure the model as it is.
        None => {
            let eval = evaluate(model, val_data);
            EpochSummary {
                epoch: 0,
                train_loss: f64::NAN,
                val_loss: eval.loss,
                val_accuracy: eval.accuracy,
                seconds: 0.0,
            }
        }
    };
    Ok(Outcome::Finished { model: Box::new(trained), last })
}

/// Copies the checkpoint's weights into the model's variables.
fn restore_model(vs: &nn::VarStore, resume: &Resume) -> anyhow::Result<()> {
    let _no_grad = tch::no_grad_guard();
    for (name, mut variable) in vs.variables() {
        let saved = resume.find(&name).ok_or_else(|| anyhow::anyhow!("the checkpoint has no `{name}`"))?;
        variable.copy_(&saved);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_datasets::synthetic;
    use cairn_domain::{SampleRange, TrainRequest};
    use std::collections::BTreeMap;

    /// Records what training reports; can ask it to stop after some steps, and keeps the
    /// last checkpoint in memory.
    #[derive(Default)]
    pub(crate) struct Recorded {
        pub points: Vec<(Cow<'static, str>, u64, f64)>,
        pub stop_after_points: Option<(usize, Stop)>,
        pub last_checkpoint: Option<Vec<(String, Tensor)>>,
        pub checkpoints: usize,
    }

    impl Progress for Recorded {
        fn metric(&mut self, key: impl Into<Cow<'static, str>>, step: u64, value: f64) {
            self.points.push((key.into(), step, value));
        }

        fn stop(&self) -> Option<Stop> {
            self.stop_after_points.filter(|(limit, _)| self.points.len() >= *limit).map(|(_, stop)| stop)
        }

        fn checkpoint(&mut self, checkpoint: &Checkpoint<'_>) -> anyhow::Result<()> {
            // Deep copies: the live tensors keep changing after this call.
            self.last_checkpoint = Some(checkpoint.tensors().into_iter().map(|(n, t)| (n, t.copy())).collect());
            self.checkpoints += 1;
            Ok(())
        }
    }

    impl Recorded {
        /// Points as Postgres keeps them: one value per key and step, the first one written.
        fn stored(&self) -> BTreeMap<(String, u64), f64> {
            let mut stored = BTreeMap::new();
            for (key, step, value) in &self.points {
                if key != keys::EPOCH_SECONDS && key != keys::SAMPLES_PER_SECOND {
                    stored.entry((key.to_string(), *step)).or_insert(*value);
                }
            }
            stored
        }

        pub(crate) fn count(&self, key: &str) -> usize {
            self.points.iter().filter(|(k, _, _)| k == key).count()
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

    /// Trains fresh weights.
    pub(crate) fn fit(
        params: &TrainParams,
        data: &(TensorData, TensorData),
        resume: Option<Resume>,
        progress: &mut Recorded,
    ) -> Outcome {
        train(params, Start::fresh(params.seed, Device::Cpu), &data.0, &data.1, resume, progress).expect("trains")
    }

    pub(crate) fn finished(outcome: Outcome) -> (Model, EpochSummary) {
        match outcome {
            Outcome::Finished { model, last } => (*model, last),
            Outcome::Stopped => panic!("training stopped early"),
        }
    }

    #[test]
    fn learns_synthetic_digits_and_logs_every_metric() {
        let params = small_params(2);
        let data = tensors(&params);
        let mut recorded = Recorded::default();
        let (_, last) = finished(fit(&params, &data, None, &mut recorded));
        assert!(last.val_accuracy > 0.8, "validation accuracy {} after 2 epochs", last.val_accuracy);
        let count = |key| recorded.count(key);
        // 1200 / 32 = 38 steps per epoch, 76 in all, logged every 10 steps.
        assert_eq!(count(keys::TRAIN_LOSS), 7);
        for key in [keys::EPOCH_TRAIN_LOSS, keys::VAL_LOSS, keys::VAL_ACCURACY, keys::EPOCH_SECONDS] {
            assert_eq!(count(key), 2, "{key}");
        }
        assert_eq!(recorded.checkpoints, 1, "a checkpoint after each epoch but the last");
        let first_loss = recorded.points.iter().find(|(k, _, _)| k == keys::TRAIN_LOSS).expect("loss").2;
        assert!(last.train_loss < first_loss, "loss went from {first_loss} to {}", last.train_loss);
    }

    #[test]
    fn the_same_seed_gives_the_same_metrics() {
        let params = small_params(1);
        let data = tensors(&params);
        let run = || {
            let mut recorded = Recorded::default();
            fit(&params, &data, None, &mut recorded);
            recorded.stored()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn stops_between_steps_when_asked() {
        let params = small_params(2);
        let data = tensors(&params);
        let mut recorded = Recorded { stop_after_points: Some((1, Stop::Now)), ..Default::default() };
        let outcome = fit(&params, &data, None, &mut recorded);
        assert!(matches!(outcome, Outcome::Stopped));
        assert_eq!(recorded.points.len(), 1);
        assert!(recorded.last_checkpoint.is_none());
    }

    fn resumed_matches_uninterrupted(stop_after_points: usize) {
        let params = small_params(3);
        let data = tensors(&params);
        let mut whole = Recorded::default();
        let (whole_model, whole_last) = finished(fit(&params, &data, None, &mut whole));

        let mut first =
            Recorded { stop_after_points: Some((stop_after_points, Stop::AfterCheckpoint)), ..Default::default() };
        assert!(matches!(fit(&params, &data, None, &mut first), Outcome::Stopped));
        let checkpoint = Resume(first.last_checkpoint.take().expect("a checkpoint before stopping"));
        let mut second = Recorded::default();
        let (resumed_model, resumed_last) = finished(fit(&params, &data, Some(checkpoint), &mut second));

        let mut combined = first.stored();
        for (key, value) in second.stored() {
            combined.entry(key).or_insert(value);
        }
        assert_eq!(combined, whole.stored());
        assert_eq!(resumed_last.val_accuracy, whole_last.val_accuracy);
        assert_eq!(resumed_last.val_loss, whole_last.val_loss);
        for ((name, weight), (_, resumed)) in whole_model.parameters().iter().zip(resumed_model.parameters()) {
            assert!(weight.equal(&resumed), "{name} differs");
        }
    }

    #[test]
    fn a_run_resumed_mid_epoch_ends_exactly_like_an_uninterrupted_one() {
        // 3 train_loss points in: epoch 1, step 30 of 38.
        resumed_matches_uninterrupted(3);
    }

    #[test]
    fn a_run_resumed_in_a_later_epoch_ends_exactly_like_an_uninterrupted_one() {
        // Epoch 1's 3 losses and 5 epoch metrics, then 4 losses of epoch 2.
        resumed_matches_uninterrupted(12);
    }
}
