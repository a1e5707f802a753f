//! The work of each run kind, on a blocking thread. A job reads its inputs (data, the
//! checkpoints it starts from), reports metrics through `Progress`, writes its files under the
//! artifact directory, and returns the files to record. It knows nothing of Postgres: the
//! executor resolved every path beforehand and records what the job returns.
mod fit;
mod measure;
mod quantize;

use crate::{checkpoint::SavedFile, device, model::TensorData, training::Progress, training::Resume};
use cairn_datasets::DataDir;
use cairn_domain::{DatasetName, RunParams, SampleRange};
use std::path::PathBuf;

/// Files a job wrote, by artifact kind (`checkpoint` is the model children start from).
pub type Written = Vec<(&'static str, SavedFile)>;

/// What a job reads besides its parameters.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The final checkpoints of the parent and, for an ensemble, of the other members.
    pub models: Vec<PathBuf>,
    /// The checkpoint an earlier attempt of this run left, to continue from.
    pub resume: Option<PathBuf>,
    /// The uploaded IDX file a prediction reads.
    pub upload: Option<PathBuf>,
}

pub struct Job {
    pub run_id: i64,
    pub params: RunParams,
    pub inputs: Inputs,
    pub data_dir: DataDir,
    pub artifact_dir: PathBuf,
    pub worker_device: tch::Device,
}

/// Runs the job; `None` when it stopped early (cancelled, lease lost, worker shutting down).
pub fn run(job: &Job, progress: &mut impl Progress) -> anyhow::Result<Option<Written>> {
    match &job.params {
        RunParams::Train(params) => fit::train(job, params, progress),
        RunParams::Prune(params) => fit::prune(job, params, progress),
        RunParams::Quantize(params) => quantize::quantize(job, params, progress).map(Some),
        RunParams::Evaluate(params) => measure::evaluate(job, params, progress).map(Some),
        RunParams::Ensemble(params) => measure::evaluate(job, &params.evaluation(), progress).map(Some),
        RunParams::Predict(params) => measure::predict(job, params, progress).map(Some),
    }
}

impl Job {
    fn device(&self, wanted: cairn_domain::Device) -> anyhow::Result<tch::Device> {
        device::for_run(wanted, self.worker_device).map_err(anyhow::Error::msg)
    }

    fn tensors(&self, dataset: &DatasetName, range: SampleRange, device: tch::Device) -> anyhow::Result<TensorData> {
        Ok(TensorData::new(&self.data_dir.load(dataset, range)?, device))
    }

    /// The checkpoint of the run this one starts from.
    fn parent(&self) -> anyhow::Result<&PathBuf> {
        self.inputs.models.first().ok_or_else(|| anyhow::anyhow!("this run needs its parent's checkpoint"))
    }

    fn resume(&self) -> anyhow::Result<Option<Resume>> {
        let Some(path) = &self.inputs.resume else { return Ok(None) };
        let tensors =
            tch::Tensor::read_safetensors(path).map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?;
        Ok(Some(Resume(tensors)))
    }
}
