//! Resolving dataset names inside the data directory, and loading ranges of them.
use crate::{IMAGE_PIXELS, Samples, idx, synthetic};
use cairn_domain::{DatasetName, SampleRange, dataset::SYNTHETIC_DIGITS};
use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "unknown dataset `{name}`: the data directory has no folder of IDX files by that name (available: {available})"
    )]
    Unknown { name: String, available: String },
    #[error("dataset `{name}` has several IDX pairs ({prefixes}); name one as `{name}/<prefix>`")]
    Ambiguous { name: String, prefixes: String },
    #[error("dataset `{name}` has `{images}` but no matching labels file `{labels}`")]
    MissingLabels { name: String, images: String, labels: String },
    #[error("{path}: {source}")]
    File { path: String, source: idx::IdxError },
    #[error("{path}: {images} images but {labels} labels")]
    CountMismatch { path: String, images: usize, labels: usize },
    #[error("range {range} is outside dataset `{name}` of {len} samples")]
    OutOfRange { name: String, range: SampleRange, len: usize },
}

/// The folder datasets are read from. Names resolve inside it only.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// The two files of one IDX dataset.
struct IdxPair {
    images: PathBuf,
    labels: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many samples the dataset has, reading only the file headers.
    pub fn len(&self, name: &DatasetName) -> Result<usize, DatasetError> {
        if name.is_synthetic() {
            return Ok(synthetic::LEN);
        }
        let pair = self.resolve(name)?;
        let images = read_header(&pair.images, idx::IMAGES_MAGIC)?;
        let labels = read_header(&pair.labels, idx::LABELS_MAGIC)?;
        if images != labels {
            return Err(DatasetError::CountMismatch { path: display(&pair.labels), images, labels });
        }
        Ok(images)
    }

    /// Samples `range` of the dataset. A truncated or mislabelled file is an error that names
    /// the file and the problem.
    pub fn load(&self, name: &DatasetName, range: SampleRange) -> Result<Samples, DatasetError> {
        let out_of_range = |len| DatasetError::OutOfRange { name: name.to_string(), range, len };
        if name.is_synthetic() {
            return if range.end <= synthetic::LEN {
                Ok(synthetic::samples(range))
            } else {
                Err(out_of_range(synthetic::LEN))
            };
        }
        let pair = self.resolve(name)?;
        let images = read_whole(&pair.images, idx::read_images)?;
        let labels = read_whole(&pair.labels, idx::read_labels)?;
        let count = images.len() / IMAGE_PIXELS;
        if count != labels.len() {
            return Err(DatasetError::CountMismatch {
                path: display(&pair.labels),
                images: count,
                labels: labels.len(),
            });
        }
        if range.end > count {
            return Err(out_of_range(count));
        }
        Ok(Samples {
            images: images[range.start * IMAGE_PIXELS..range.end * IMAGE_PIXELS].to_vec(),
            labels: labels[range.start..range.end].to_vec(),
        })
    }

    /// Every dataset name that `len` and `load` accept, for error messages and forms.
    pub fn available(&self) -> Vec<String> {
        let mut names = vec![SYNTHETIC_DIGITS.to_owned()];
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            let mut folders: Vec<String> = entries
                .flatten()
                .filter(|entry| entry.path().is_dir())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|folder| {
                    DatasetName::parse(folder)
                        .is_ok_and(|name| !idx_prefixes(&self.root.join(name.as_str())).is_empty())
                })
                .collect();
            folders.sort();
            names.extend(folders);
        }
        names
    }

    fn resolve(&self, name: &DatasetName) -> Result<IdxPair, DatasetError> {
        let (folder, prefix) = name.folder_and_prefix();
        let unknown = || DatasetError::Unknown { name: name.to_string(), available: self.available().join(", ") };
        // DatasetName already forbids `..` and `/` at the start; canonicalising also stops a
        // symlink inside the data directory from pointing outside it.
        let root = self.root.canonicalize().map_err(|_| unknown())?;
        let dir = root.join(folder).canonicalize().map_err(|_| unknown())?;
        if !dir.starts_with(&root) || !dir.is_dir() {
            return Err(unknown());
        }
        let prefixes = idx_prefixes(&dir);
        let chosen = match prefix {
            Some(prefix) => prefixes.iter().find(|(p, _)| p == prefix).ok_or_else(unknown)?,
            None if prefixes.len() == 1 => &prefixes[0],
            None if prefixes.is_empty() => return Err(unknown()),
            None => {
                let names: Vec<&str> = prefixes.iter().map(|(p, _)| p.as_str()).collect();
                return Err(DatasetError::Ambiguous { name: name.to_string(), prefixes: names.join(", ") });
            }
        };
        let images = dir.join(&chosen.1);
        let labels_name = chosen.1.replacen("images-idx3", "labels-idx1", 1);
        let labels = dir.join(&labels_name);
        if !labels.is_file() {
            return Err(DatasetError::MissingLabels {
                name: name.to_string(),
                images: chosen.1.clone(),
                labels: labels_name,
            });
        }
        Ok(IdxPair { images, labels })
    }
}

/// `(prefix, file name)` of every `<prefix>-images-idx3-ubyte[.gz]` in `dir`, sorted.
fn idx_prefixes(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|file| {
            let stem = file.strip_suffix(".gz").unwrap_or(&file);
            let prefix = stem.strip_suffix("-images-idx3-ubyte")?;
            Some((prefix.to_owned(), file.clone()))
        })
        .collect();
    found.sort();
    found
}

fn open(path: &Path) -> Result<Box<dyn Read>, DatasetError> {
    let file = File::open(path).map_err(|err| file_error(path, idx::IdxError::from(err)))?;
    idx::decompressing(file).map_err(|err| file_error(path, idx::IdxError::from(err)))
}

fn read_header(path: &Path, magic: u32) -> Result<usize, DatasetError> {
    idx::count(&mut open(path)?, magic).map_err(|err| file_error(path, err))
}

fn read_whole<T>(path: &Path, read: fn(&mut dyn Read) -> Result<T, idx::IdxError>) -> Result<T, DatasetError> {
    read(&mut open(path)?).map_err(|err| file_error(path, err))
}

fn file_error(path: &Path, source: idx::IdxError) -> DatasetError {
    DatasetError::File { path: display(path), source }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::tests::{image_file, label_file};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("cairn-datasets-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("digits")).expect("temp dir");
            Self(dir)
        }

        fn write(&self, file: &str, bytes: &[u8]) {
            std::fs::write(self.0.join("digits").join(file), bytes).expect("write");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn name(name: &str) -> DatasetName {
        DatasetName::parse(name).expect("valid name")
    }

    #[test]
    fn loads_a_range_of_an_idx_pair() {
        let dir = TempDir::new("range");
        dir.write("train-images-idx3-ubyte", &image_file(5, 9));
        dir.write("train-labels-idx1-ubyte", &label_file(&[0, 1, 2, 3, 4]));
        let data = DataDir::new(&dir.0);
        assert_eq!(data.len(&name("digits")).expect("len"), 5);
        let slice = data.load(&name("digits"), SampleRange::new(1, 3)).expect("load");
        assert_eq!(slice.labels, vec![1, 2]);
        assert_eq!(data.available(), vec!["synthetic-digits", "digits"]);
        assert!(matches!(data.load(&name("digits"), SampleRange::new(0, 6)), Err(DatasetError::OutOfRange { .. })));
    }

    #[test]
    fn a_mislabelled_file_names_the_file_and_the_label() {
        let dir = TempDir::new("bad");
        dir.write("x-images-idx3-ubyte", &image_file(2, 0));
        dir.write("x-labels-idx1-ubyte", &label_file(&[3, 12]));
        let err = DataDir::new(&dir.0).load(&name("digits"), SampleRange::new(0, 2)).expect_err("bad label");
        let message = err.to_string();
        assert!(message.contains("x-labels-idx1-ubyte") && message.contains("label 12"), "{message}");
    }

    #[test]
    fn several_pairs_need_a_prefix_and_unknown_names_list_what_exists() {
        let dir = TempDir::new("pairs");
        for prefix in ["a", "b"] {
            dir.write(&format!("{prefix}-images-idx3-ubyte"), &image_file(1, 0));
            dir.write(&format!("{prefix}-labels-idx1-ubyte"), &label_file(&[1]));
        }
        let data = DataDir::new(&dir.0);
        assert!(matches!(data.len(&name("digits")), Err(DatasetError::Ambiguous { .. })));
        assert_eq!(data.len(&name("digits/b")).expect("len"), 1);
        let err = data.len(&name("nothing")).expect_err("unknown").to_string();
        assert!(err.contains("available: synthetic-digits, digits"), "{err}");
    }

    #[test]
    fn synthetic_digits_needs_no_files() {
        let data = DataDir::new("/nonexistent");
        assert_eq!(data.len(&name(SYNTHETIC_DIGITS)).expect("len"), synthetic::LEN);
        assert_eq!(data.load(&name(SYNTHETIC_DIGITS), SampleRange::new(0, 3)).expect("load").len(), 3);
    }
}
