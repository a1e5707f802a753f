//! Model checkpoints: safetensors files under the artifact directory, with their size and
//! sha256 recorded beside the run.
use crate::model::Cnn;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::{
    io::Read,
    path::{Path, PathBuf},
};
use tch::{Device, Tensor, nn};

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

/// Saves `model` as `file_name` in the run's folder. It is written to a temporary name and
/// renamed, so a reader never sees half a checkpoint.
pub fn save(model: &nn::VarStore, artifact_dir: &Path, run_id: i64, file_name: &str) -> anyhow::Result<SavedFile> {
    write_atomically(artifact_dir, run_id, file_name, |partial| model.save(partial).map_err(anyhow::Error::from))
}

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

/// Saves named tensors (a resume checkpoint) as `file_name` in the run's folder, the same way.
pub fn save_tensors(
    tensors: &[(String, Tensor)],
    artifact_dir: &Path,
    run_id: i64,
    file_name: &str,
) -> anyhow::Result<SavedFile> {
    write_atomically(artifact_dir, run_id, file_name, |partial| {
        Tensor::write_safetensors(tensors, partial).map_err(anyhow::Error::from)
    })
}

/// Saves bytes (a confusion matrix as JSON, say) as `file_name` in the run's folder.
pub fn save_bytes(bytes: &[u8], artifact_dir: &Path, run_id: i64, file_name: &str) -> anyhow::Result<SavedFile> {
    write_atomically(artifact_dir, run_id, file_name, |partial| Ok(std::fs::write(partial, bytes)?))
}

/// Loads a checkpoint written by `save` into a fresh model on `device`.
pub fn load(path: &Path, device: Device) -> anyhow::Result<(nn::VarStore, Cnn)> {
    let mut vs = nn::VarStore::new(device);
    let model = Cnn::new(&vs.root());
    vs.load(path).with_context(|| format!("loading checkpoint {}", path.display()))?;
    Ok((vs, model))
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
    use crate::model::evaluate;
    use crate::training::{
        Outcome,
        tests::{Recorded, small_params, tensors},
        train,
    };

    #[test]
    fn a_saved_checkpoint_reloads_to_the_same_accuracy() {
        let params = small_params(1);
        let (train_data, val_data) = tensors(&params);
        let Outcome::Finished { model, last } =
            train(&params, &train_data, &val_data, Device::Cpu, None, &mut Recorded::default()).expect("trains")
        else {
            panic!("training stopped early")
        };
        let dir = std::env::temp_dir().join(format!("cairn-checkpoint-{}", std::process::id()));
        let saved = save(&model, &dir, 7, FINAL_CHECKPOINT).expect("saves");
        assert_eq!(saved.path, "runs/7/model.safetensors");
        assert_eq!(digest(&dir.join(&saved.path)).expect("digest"), (saved.bytes, saved.sha256.clone()));
        assert!(saved.bytes > 100_000, "a CNN of ~100k floats, got {} bytes", saved.bytes);

        let (_vs, reloaded) = load(&dir.join(&saved.path), Device::Cpu).expect("loads");
        assert_eq!(evaluate(&reloaded, &val_data).accuracy, last.val_accuracy);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
