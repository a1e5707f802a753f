use cairn_domain::{
    RetryPolicy,
    settings::{Secret, env_or},
};
use std::time::Duration;

/// The scheduler's settings, read once at start. README.md lists each variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CAIRN_DATABASE_URL`
    pub database_url: Secret,
    /// `CAIRN_REDIS_URL`
    pub redis_url: Secret,
    /// `CAIRN_QUEUE_PREFIX`: the Redis key prefix shared with the workers.
    pub queue_prefix: String,
    /// `CAIRN_SWEEP_INTERVAL_MS`: how often every queued run is pushed again.
    pub sweep_interval: Duration,
    /// When a run whose worker was lost is tried again (`CAIRN_MAX_ATTEMPTS`,
    /// `CAIRN_RETRY_BACKOFF_MS`, `CAIRN_RETRY_MAX_BACKOFF_MS`).
    pub retry: RetryPolicy,
    /// `CAIRN_REAP_GRACE_MS`: after Postgres comes back (and at start), how long workers get
    /// to renew their leases before expired ones are ended as lost.
    pub reap_grace: Duration,
    /// `CAIRN_VACUUM_INTERVAL_MS`: how often finished jobs are removed from Redis.
    pub vacuum_interval: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            database_url: env_or("CAIRN_DATABASE_URL", Secret::new("postgres://postgres@127.0.0.1:5432/cairn"))?,
            redis_url: env_or("CAIRN_REDIS_URL", Secret::new("redis://127.0.0.1:6379"))?,
            queue_prefix: env_or("CAIRN_QUEUE_PREFIX", "cairn".to_owned())?,
            sweep_interval: Duration::from_millis(env_or("CAIRN_SWEEP_INTERVAL_MS", 5_000)?),
            retry: RetryPolicy::from_env()?,
            reap_grace: Duration::from_millis(env_or("CAIRN_REAP_GRACE_MS", 10_000)?),
            vacuum_interval: Duration::from_millis(env_or("CAIRN_VACUUM_INTERVAL_MS", 60_000)?),
        })
    }
}
