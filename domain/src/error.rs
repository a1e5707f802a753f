use std::fmt;

/// A rejected input: which field, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error seen from an enclosing object, e.g. `epochs` becomes `params.epochs`.
    pub fn within(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}
