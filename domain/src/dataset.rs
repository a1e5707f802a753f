use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The built-in dataset, generated from a fixed seed: nothing to download.
pub const SYNTHETIC_DIGITS: &str = "synthetic-digits";

const MAX_NAME_LEN: usize = 128;

/// A dataset name: `synthetic-digits`, or a folder of the data directory (`mnist`),
/// optionally followed by the prefix of one IDX pair inside it (`mnist/t10k`).
///
/// Names are restricted to lower-case letters, digits, `_`, `-` and `.` in at most two
/// segments, neither starting with `.`, so a name can never leave the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

impl DatasetName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        let err = |rule: &str| ValidationError::new("dataset", rule);
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(err("must be 1 to 128 characters"));
        }
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() > 2 {
            return Err(err("must be `folder` or `folder/prefix`"));
        }
        for segment in &segments {
            let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c);
            if segment.is_empty() || segment.starts_with('.') || !segment.chars().all(allowed) {
                return Err(err("may contain only a-z, 0-9, `_`, `-` and `.`, and no segment may start with `.`"));
            }
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_synthetic(&self) -> bool {
        self.0 == SYNTHETIC_DIGITS
    }

    /// The data-directory folder and the optional file prefix inside it.
    pub fn folder_and_prefix(&self) -> (&str, Option<&str>) {
        match self.0.split_once('/') {
            Some((folder, prefix)) => (folder, Some(prefix)),
            None => (&self.0, None),
        }
    }
}

impl TryFrom<String> for DatasetName {
    type Error = ValidationError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<DatasetName> for String {
    fn from(name: DatasetName) -> Self {
        name.0
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Samples `start..end` of a dataset (end exclusive), written `[start, end]` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[usize; 2]", into = "[usize; 2]")]
pub struct SampleRange {
    pub start: usize,
    pub end: usize,
}

impl SampleRange {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn overlaps(&self, other: &SampleRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl From<[usize; 2]> for SampleRange {
    fn from([start, end]: [usize; 2]) -> Self {
        Self { start, end }
    }
}

impl From<SampleRange> for [usize; 2] {
    fn from(range: SampleRange) -> Self {
        [range.start, range.end]
    }
}

impl fmt::Display for SampleRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_folder_and_folder_with_prefix() {
        assert!(DatasetName::parse("mnist").is_ok());
        let name = DatasetName::parse("mnist/t10k").expect("valid name");
        assert_eq!(name.folder_and_prefix(), ("mnist", Some("t10k")));
        assert!(DatasetName::parse(SYNTHETIC_DIGITS).expect("valid").is_synthetic());
    }

    #[test]
    fn rejects_names_that_could_leave_the_data_directory() {
        for bad in ["", "../etc", "..", "mnist/../x", "/etc/passwd", "a/b/c", ".hidden", "MNIST", "a b", "mnist/"] {
            let err = DatasetName::parse(bad).expect_err(bad);
            assert_eq!(err.field, "dataset");
        }
        assert!(DatasetName::parse(&"a".repeat(129)).is_err());
    }
}
