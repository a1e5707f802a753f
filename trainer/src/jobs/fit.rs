//! Jobs that train: a train run from fresh weights, and a prune run that removes weights
//! from its parent's model and fine-tunes what is left.
use super::{Job, Written};
use crate::{
    checkpoint::{self, FINAL_CHECKPOINT},
    encoding,
    model::evaluate,
    pruning,
    training::{self, Outcome, Progress, Start},
};
use cairn_domain::{PruneMethod, PruneParams, TrainParams};

pub fn train(job: &Job, params: &TrainParams, progress: &mut impl Progress) -> anyhow::Result<Option<Written>> {
    let device = job.device(params.device)?;
    let train_data = job.tensors(&params.dataset, params.train_range, device)?;
    let val_data = job.tensors(&params.dataset, params.validation_range, device)?;
    let start = Start::fresh(params.seed, device);
    let Outcome::Finished { model, last } =
        training::train(params, start, &train_data, &val_data, job.resume()?, progress)?
    else {
        return Ok(None);
    };
    let saved = checkpoint::save(&model, &job.artifact_dir, job.run_id, FINAL_CHECKPOINT)?;
    tracing::info!(val.accuracy = last.val_accuracy, checkpoint.bytes = saved.bytes, "training finished");
    Ok(Some(vec![("checkpoint", saved)]))
}

/// Prunes the parent's model, fine-tunes it with the pruned weights held at zero, and saves
/// it. An unstructured model's checkpoint is sparse-encoded (its dense copy is kept too); a
/// structured one is a smaller dense model.
pub fn prune(job: &Job, params: &PruneParams, progress: &mut impl Progress) -> anyhow::Result<Option<Written>> {
    let device = job.device(params.device)?;
    let parent = checkpoint::load(job.parent()?, device)?;
    let train_data = job.tensors(&params.dataset, params.train_range, device)?;
    let val_data = job.tensors(&params.dataset, params.validation_range, device)?;
    let before = evaluate(&parent.cnn, &val_data);
    let (parameters_before, widths_before) = (parent.widths.parameters(), parent.widths);
    let start = match params.method {
        PruneMethod::Structured => {
            Start { model: pruning::structured(&parent, &params.layers, params.sparsity)?, masks: None }
        }
        PruneMethod::GlobalMagnitude | PruneMethod::LayerMagnitude => {
            let global = params.method == PruneMethod::GlobalMagnitude;
            let masks = pruning::magnitude(&parent, &params.layers, params.sparsity, global)?;
            Start { model: parent, masks: Some(masks) }
        }
    };
    let pruned = evaluate(&start.model.cnn, &val_data);
    tracing::info!(accuracy.before = before.accuracy, accuracy.pruned = pruned.accuracy, "pruned; fine-tuning");
    let Outcome::Finished { model, .. } =
        training::train(&params.fine_tune_params(), start, &train_data, &val_data, job.resume()?, progress)?
    else {
        return Ok(None);
    };
    let after = evaluate(&model.cnn, &val_data);

    let (per_layer, overall) = match params.method {
        PruneMethod::Structured => pruning::unit_sparsity(widths_before, model.widths, &params.layers),
        _ => pruning::weight_sparsity(&model, &params.layers),
    };
    for (layer, sparsity) in per_layer {
        progress.metric(format!("sparsity/{}", layer.as_str()), 0, sparsity);
    }
    let nonzero = model.nonzero_parameters();
    for (key, value) in [
        ("sparsity", overall),
        ("accuracy_before", before.accuracy),
        ("cross_entropy_before", before.loss),
        ("accuracy_pruned", pruned.accuracy),
        ("accuracy_after", after.accuracy),
        ("cross_entropy_after", after.loss),
        ("parameters", model.widths.parameters() as f64),
        ("nonzero_parameters", nonzero as f64),
        ("parameter_reduction", 1.0 - nonzero as f64 / parameters_before as f64),
    ] {
        progress.metric(key, 0, value);
    }

    let (dir, run_id) = (&job.artifact_dir, job.run_id);
    let written = match params.method {
        PruneMethod::Structured => {
            let saved = checkpoint::save(&model, dir, run_id, FINAL_CHECKPOINT)?;
            progress.metric("checkpoint_bytes/dense", 0, saved.bytes as f64);
            vec![("checkpoint", saved)]
        }
        _ => {
            let dense = checkpoint::save(&model, dir, run_id, "model.dense.safetensors")?;
            let sparse =
                checkpoint::save_tensors(&encoding::sparse(&model.parameters()), dir, run_id, FINAL_CHECKPOINT)?;
            progress.metric("checkpoint_bytes/dense", 0, dense.bytes as f64);
            progress.metric("checkpoint_bytes/sparse", 0, sparse.bytes as f64);
            vec![("checkpoint", sparse), ("dense_checkpoint", dense)]
        }
    };
    tracing::info!(
        sparsity = overall,
        accuracy.before = before.accuracy,
        accuracy.after = after.accuracy,
        "pruning finished"
    );
    Ok(Some(written))
}
