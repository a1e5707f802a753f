//! Post-training int8 quantization of the parent's weights.
use super::{Job, Written};
use crate::{
    checkpoint::{self, FINAL_CHECKPOINT},
    encoding,
    model::{Model, evaluate},
    training::Progress,
};
use cairn_domain::QuantizeParams;
use tch::Kind;

/// Stores the parent's weights as int8 with one scale per output channel and measures what
/// that costs: accuracy before and after (the model as it will be used, dequantized), bytes
/// before (float32) and after, and the mean absolute change of a weight.
pub fn quantize(job: &Job, params: &QuantizeParams, progress: &mut impl Progress) -> anyhow::Result<Written> {
    let device = job.device(params.device)?;
    let parent = checkpoint::load(job.parent()?, device)?;
    let data = job.tensors(&params.dataset, params.range, device)?;
    let before = evaluate(&parent.cnn, &data);

    let (dir, run_id) = (&job.artifact_dir, job.run_id);
    // The float32 size, measured by writing it: the parent's own file may be sparse-encoded.
    let float32 = checkpoint::save(&parent, dir, run_id, "float32.safetensors")?;
    std::fs::remove_file(dir.join(&float32.path))?;
    let encoded = encoding::int8(&parent.parameters());
    let saved = checkpoint::save_tensors(&encoded, dir, run_id, FINAL_CHECKPOINT)?;
    let quantized = Model::from_parameters(&encoding::decode(&encoded)?, device)?;
    let after = evaluate(&quantized.cnn, &data);

    let _no_grad = tch::no_grad_guard();
    let (mut error_sum, mut weights) = (0.0, 0i64);
    for ((name, original), (_, dequantized)) in parent.parameters().iter().zip(quantized.parameters()) {
        if name.ends_with(".weight") {
            error_sum += (original - dequantized).abs().sum(Kind::Double).double_value(&[]);
            weights += original.numel() as i64;
        }
    }
    for (key, value) in [
        ("accuracy_before", before.accuracy),
        ("cross_entropy_before", before.loss),
        ("accuracy_after", after.accuracy),
        ("cross_entropy_after", after.loss),
        ("bytes_before", float32.bytes as f64),
        ("bytes_after", saved.bytes as f64),
        ("size_ratio", saved.bytes as f64 / float32.bytes as f64),
        ("mean_abs_weight_error", error_sum / weights as f64),
    ] {
        progress.metric(key, 0, value);
    }
    tracing::info!(
        accuracy.before = before.accuracy,
        accuracy.after = after.accuracy,
        bytes.after = saved.bytes,
        "quantized"
    );
    Ok(vec![("checkpoint", saved)])
}
