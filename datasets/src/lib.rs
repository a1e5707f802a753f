//! Training data: IDX files (gzipped or raw) in the data directory, and the built-in
//! `synthetic-digits` generated from a fixed seed. No tch here: samples are plain bytes that
//! the trainer turns into tensors and the API only counts.

mod catalog;
pub mod idx;
pub mod synthetic;

pub use catalog::{DataDir, DatasetError};

/// Side length of every image Cairn trains on.
pub const IMAGE_SIDE: usize = 28;
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
pub const CLASSES: u8 = 10;

/// A slice of a dataset: `labels.len()` images of 28x28 grey bytes, row-major, one after
/// the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }
}
