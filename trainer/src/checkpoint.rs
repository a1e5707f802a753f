//! Model checkpoints: safetensors files under the artifact directory, with their size and
//! sha256 recorded beside the run. `encoding` says how the parameters inside are stored.
use crate::{encoding, model::Model};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::{
    io::Read,
    path::{Path, PathBuf},
};
use tch::{Device, Tensor};

pub const FINAL_CHECKPOINT: &str = "model.safetensors";

/// A file written under the artifact directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    /// Relative to the artifact directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The folder of one run's artifacts, relative to the artifact directory.
pub fn run_folder(run_id: i64) -> PathBuf {
    PathBuf::from("runs").join(run_id.to_string())
}

/// Saves `model`'s parameters, dense, as `file_name` in the run's folder.
pub fn save(model: &Model, artifact_dir: &Path, run_id: i64, file_name: &str) -> anyhow::Result<SavedFile> {
    save_tensors(&model.parameters(), artifact_dir, run_id, file_name)
}

/// Writes a file under a temporary name and renames it, so a reader never sees half of it.
fn write_atomically(
    artifact_dir: &Path,
    run_id: i64,
    file_name: &str,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<SavedFile> {
    let relative = run_folder(run_id).join(file_name);
    let target = artifact_dir.join(&relative);
    let folder = target.parent().context("checkpoint path has a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let partial = folder.join(format!(".{file_name}.partial.safetensors"));
    write(&partial).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &target).with_context(|| format!("renaming to {}", target.display()))?;
    let (bytes, sha256) = digest(&target)?;
    Ok(SavedFile { path: relative.to_string_lossy().into_owned(), bytes, sha256 })
}

/// Saves named tensors (a model in some encoding, a resume checkpoint) as `file_name` in the
/// run's folder.
pub fn save_tensors(
    tensors: &[(String, Tensor)],
    artifact_dir: &Path,
    run_id: i64,
    file_name: &str,
) -> anyhow::Result<SavedFile> {
    let on_cpu: Vec<(&str, Tensor)> =
        tensors.iter().map(|(name, t)| (name.as_str(), t.to_device(Device::Cpu))).collect();
    write_atomically(artifact_dir, run_id, file_name, |partial| {
        Tensor::write_safetensors(&on_cpu, partial).map_err(anyhow::Error::from)
    })
}

/// Saves bytes (a confusion matrix as JSON, say) as `file_name` in the run's folder.
pub fn save_bytes(bytes: &[u8], artifact_dir: &Path, run_id: i64, file_name: &str) -> anyhow::Result<SavedFile> {
    write_atomically(artifact_dir, run_id, file_name, |partial| Ok(std::fs::write(partial, bytes)?))
}

/// Loads a model checkpoint in any encoding onto `device`.
pub fn load(path: &Path, device: Device) -> anyhow::Result<Model> {
    let load = || {
        let stored = Tensor::read_safetensors(path)?;
        Model::from_parameters(&encoding::decode(&stored)?, device)
    };
    load().with_context(|| format!("loading checkpoint {}", path.display()))
}

/// Size and hex sha256 of a file.
pub fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::evaluate,
        pruning,
        training::tests::{Recorded, finished, fit, small_params, tensors},
    };
    use cairn_domain::Layer;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cairn-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_saved_checkpoint_reloads_to_the_same_accuracy() {
        let params = small_params(1);
        let data = tensors(&params);
        let (model, last) = finished(fit(&params, &data, None, &mut Recorded::default()));
        let dir = temp_dir("checkpoint");
        let saved = save(&model, &dir, 7, FINAL_CHECKPOINT).expect("saves");
        assert_eq!(saved.path, "runs/7/model.safetensors");
        assert_eq!(digest(&dir.join(&saved.path)).expect("digest"), (saved.bytes, saved.sha256.clone()));
        assert!(saved.bytes > 100_000, "a CNN of ~100k floats, got {} bytes", saved.bytes);

        let reloaded = load(&dir.join(&saved.path), Device::Cpu).expect("loads");
        assert_eq!(evaluate(&reloaded.cnn, &data.1).accuracy, last.val_accuracy);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_int8_checkpoint_is_under_30_percent_of_float32_and_within_a_point_of_its_accuracy() {
        let params = small_params(1);
        let data = tensors(&params);
        let (model, _) = finished(fit(&params, &data, None, &mut Recorded::default()));
        let dir = temp_dir("int8");
        let float32 = save(&model, &dir, 1, "float32.safetensors").expect("saves");
        let int8 = save_tensors(&encoding::int8(&model.parameters()), &dir, 1, "int8.safetensors").expect("saves");
        assert!(int8.bytes * 10 <= float32.bytes * 3, "int8 {} bytes vs float32 {}", int8.bytes, float32.bytes);
        let quantized = load(&dir.join(&int8.path), Device::Cpu).expect("loads");
        let (before, after) = (evaluate(&model.cnn, &data.1).accuracy, evaluate(&quantized.cnn, &data.1).accuracy);
        assert!((before - after).abs() <= 0.01, "accuracy {before} became {after}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_sparse_checkpoint_of_a_pruned_model_is_smaller_and_reloads_exactly() {
        let params = small_params(1);
        let data = tensors(&params);
        let (model, _) = finished(fit(&params, &data, None, &mut Recorded::default()));
        pruning::magnitude(&model, &Layer::ALL, 0.9, true).expect("prunes");
        let dir = temp_dir("sparse");
        let dense = save(&model, &dir, 1, "dense.safetensors").expect("saves");
        let sparse =
            save_tensors(&encoding::sparse(&model.parameters()), &dir, 1, "sparse.safetensors").expect("saves");
        // 10% of the weights as float32 plus one bit per weight: about 14% of dense.
        assert!(sparse.bytes * 5 < dense.bytes, "sparse {} bytes vs dense {}", sparse.bytes, dense.bytes);
        let reloaded = load(&dir.join(&sparse.path), Device::Cpu).expect("loads");
        for ((name, original), (_, loaded)) in model.parameters().iter().zip(reloaded.parameters()) {
            assert!(original.equal(&loaded), "{name}");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
