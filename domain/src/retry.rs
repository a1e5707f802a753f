//! The retry policy for infrastructure failures: an attempt whose worker was lost, ran out of
//! memory, or lost Postgres is tried again after a backoff that doubles each time, until
//! `max_attempts` attempts failed that way. A run whose input or model is at fault is not
//! retried. The scheduler (lost workers) and the worker (the failures it sees) apply the same
//! policy through the database's `retry_or_fail`.
use crate::settings::env_or;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `CAIRN_MAX_ATTEMPTS`: how many attempts may fail on infrastructure before the run fails.
    pub max_attempts: u32,
    /// `CAIRN_RETRY_BACKOFF_MS`: the wait before the first retry; it doubles with each retry.
    pub first_backoff: Duration,
    /// `CAIRN_RETRY_MAX_BACKOFF_MS`: the longest wait between attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub fn from_env() -> Result<Self, String> {
        let policy = Self {
            max_attempts: env_or("CAIRN_MAX_ATTEMPTS", 3)?,
            first_backoff: Duration::from_millis(env_or("CAIRN_RETRY_BACKOFF_MS", 10_000)?),
            max_backoff: Duration::from_millis(env_or("CAIRN_RETRY_MAX_BACKOFF_MS", 300_000)?),
        };
        if policy.max_attempts == 0 {
            return Err("CAIRN_MAX_ATTEMPTS: must be at least 1".to_owned());
        }
        Ok(policy)
    }

    /// The backoffs in milliseconds, as `retry_or_fail` takes them.
    pub fn backoff_millis(&self) -> (i64, i64) {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        (millis(self.first_backoff), millis(self.max_backoff))
    }
}
