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
