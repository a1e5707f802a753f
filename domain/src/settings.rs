//! Reading a process's settings from environment variables with documented defaults.
//! Each process has its own settings struct; this is only the parsing they share.
use std::{fmt::Display, str::FromStr};

/// The value of `name`, or `default` when it is unset. A value that does not parse is an
/// error naming the variable, so a typo stops the process at start instead of later.
pub fn env_or<T>(name: &str, default: T) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(raw) => raw.trim().parse().map_err(|err| format!("{name}={raw:?}: {err}")),
        Err(_) => Ok(default),
    }
}

/// A comma-separated list, e.g. `CAIRN_WORKER_QUEUES=gpu,default`.
pub fn env_list_or(name: &str, default: &[&str]) -> Vec<String> {
    match std::env::var(name) {
        Ok(raw) => raw.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
        Err(_) => default.iter().map(|item| (*item).to_owned()).collect(),
    }
}

/// A setting that holds a credential (a database URL with its password). It never prints:
/// `Debug` and `Display` show `[redacted]`, so logging a settings struct leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("postgres://cairn:hunter2@db/cairn");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "postgres://cairn:hunter2@db/cairn");
    }
}
