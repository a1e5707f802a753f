//! The IDX format of MNIST: a big-endian magic (0x0803 for u8 images, 0x0801 for u8 labels),
//! one big-endian u32 per dimension, then the bytes.
use crate::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use flate2::read::GzDecoder;
use std::io::{self, Read};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdxError {
    #[error("bad magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic { expected: u32, found: u32 },
    #[error("truncated: the header promises {expected} bytes of data but the file has {found}")]
    Truncated { expected: usize, found: usize },
    #[error("images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")]
    WrongShape { rows: usize, cols: usize },
    #[error("label {label} at index {index} is not a class 0-9")]
    BadLabel { index: usize, label: u8 },
    #[error("could not be read: {0}")]
    Io(String),
}

impl From<io::Error> for IdxError {
    fn from(err: io::Error) -> Self {
        Self::Io(err.to_string())
    }
}

/// Wraps `reader` in a gzip decoder when the stream starts with the gzip magic.
pub fn decompressing(mut reader: impl Read + 'static) -> io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 2];
    let read = read_up_to(&mut reader, &mut magic)?;
    let head = io::Cursor::new(magic[..read].to_vec()).chain(reader);
    Ok(if magic[..read] == [0x1f, 0x8b] { Box::new(GzDecoder::new(head)) } else { Box::new(head) })
}

/// The number of items an IDX stream says it holds, reading only its header.
pub fn count(reader: &mut dyn Read, expected_magic: u32) -> Result<usize, IdxError> {
    let dims = header(reader, expected_magic)?;
    Ok(dims[0])
}

/// Reads a whole image file; every image must be 28x28.
pub fn read_images(reader: &mut dyn Read) -> Result<Vec<u8>, IdxError> {
    let dims = header(reader, IMAGES_MAGIC)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE) {
        return Err(IdxError::WrongShape { rows, cols });
    }
    read_body(reader, count * IMAGE_PIXELS)
}

/// Reads a whole label file; every label must be a class 0-9.
pub fn read_labels(reader: &mut dyn Read) -> Result<Vec<u8>, IdxError> {
    let dims = header(reader, LABELS_MAGIC)?;
    let labels = read_body(reader, dims[0])?;
    match labels.iter().position(|&label| label >= CLASSES) {
        Some(index) => Err(IdxError::BadLabel { index, label: labels[index] }),
        None => Ok(labels),
    }
}

fn header(reader: &mut dyn Read, expected: u32) -> Result<Vec<usize>, IdxError> {
    let mut magic = [0u8; 4];
    let read = read_up_to(reader, &mut magic)?;
    if read < 4 {
        return Err(IdxError::Truncated { expected: 4, found: read });
    }
    let found = u32::from_be_bytes(magic);
    if found != expected {
        return Err(IdxError::BadMagic { expected, found });
    }
    let dims = (expected & 0xff) as usize;
    let mut raw = vec![0u8; dims * 4];
    let read = read_up_to(reader, &mut raw)?;
    if read < raw.len() {
        return Err(IdxError::Truncated { expected: raw.len(), found: read });
    }
    Ok(raw.chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect())
}

fn read_body(reader: &mut dyn Read, expected: usize) -> Result<Vec<u8>, IdxError> {
    // Read at most one byte past the promise: enough to know the body is complete, without
    // trusting a header that might claim terabytes.
    let mut body = Vec::with_capacity(expected.min(64 << 20));
    reader.take(expected as u64).read_to_end(&mut body)?;
    if body.len() < expected {
        return Err(IdxError::Truncated { expected, found: body.len() });
    }
    Ok(body)
}

fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn image_file(count: u32, fill: u8) -> Vec<u8> {
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for dim in [count, 28, 28] {
            bytes.extend(dim.to_be_bytes());
        }
        bytes.extend(std::iter::repeat_n(fill, count as usize * IMAGE_PIXELS));
        bytes
    }

    pub(crate) fn label_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
        bytes.extend((labels.len() as u32).to_be_bytes());
        bytes.extend(labels);
        bytes
    }

    #[test]
    fn reads_a_good_image_and_label_file() {
        let images = read_images(&mut &image_file(3, 7)[..]).expect("valid images");
        assert_eq!(images.len(), 3 * IMAGE_PIXELS);
        assert!(images.iter().all(|&p| p == 7));
        assert_eq!(read_labels(&mut &label_file(&[0, 9, 4])[..]).expect("valid labels"), vec![0, 9, 4]);
        assert_eq!(count(&mut &image_file(3, 0)[..], IMAGES_MAGIC), Ok(3));
    }

    #[test]
    fn rejects_a_bad_magic() {
        let err = read_images(&mut &label_file(&[1, 2])[..]).expect_err("labels are not images");
        assert_eq!(err, IdxError::BadMagic { expected: IMAGES_MAGIC, found: LABELS_MAGIC });
    }

    #[test]
    fn rejects_a_truncated_body_and_header() {
        let mut file = image_file(2, 1);
        file.truncate(file.len() - 10);
        let err = read_images(&mut &file[..]).expect_err("truncated");
        assert_eq!(err, IdxError::Truncated { expected: 2 * IMAGE_PIXELS, found: 2 * IMAGE_PIXELS - 10 });
        let err = read_labels(&mut &label_file(&[1])[..6]).expect_err("truncated header");
        assert!(matches!(err, IdxError::Truncated { .. }));
    }

    #[test]
    fn rejects_labels_outside_the_ten_classes() {
        let err = read_labels(&mut &label_file(&[1, 10])[..]).expect_err("mislabelled");
        assert_eq!(err, IdxError::BadLabel { index: 1, label: 10 });
    }

    #[test]
    fn rejects_images_that_are_not_28_by_28() {
        let mut file = image_file(1, 0);
        file[8..12].copy_from_slice(&27u32.to_be_bytes());
        assert_eq!(read_images(&mut &file[..]), Err(IdxError::WrongShape { rows: 27, cols: 28 }));
    }

    #[test]
    fn reads_gzipped_and_raw_streams_alike() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let raw = label_file(&[3, 1, 4]);
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&raw).expect("compress");
        let gz = encoder.finish().expect("compress");
        for bytes in [raw, gz] {
            let mut reader = decompressing(io::Cursor::new(bytes)).expect("opens");
            assert_eq!(read_labels(&mut reader).expect("valid"), vec![3, 1, 4]);
        }
    }
}
