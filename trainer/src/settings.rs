use cairn_domain::{
    RetryPolicy,
    settings::{Secret, env_list_or, env_or},
};
use std::{path::PathBuf, time::Duration};

/// The worker's settings, read once at start. README.md lists each variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CAIRN_DATABASE_URL`
    pub database_url: Secret,
    /// `CAIRN_REDIS_URL`
    pub redis_url: Secret,
    /// `CAIRN_QUEUE_PREFIX`: the Redis key prefix shared with the scheduler.
    pub queue_prefix: String,
    /// `CAIRN_WORKER_QUEUES`: comma-separated queue names this worker serves.
    pub queues: Vec<String>,
    /// `CAIRN_DATA_DIR`
    pub data_dir: PathBuf,
    /// `CAIRN_ARTIFACT_DIR`
    pub artifact_dir: PathBuf,
    /// `CAIRN_WORKER_ID`; unique per process start by default (host name and a ULID).
    pub worker_id: String,
    /// `CAIRN_TORCH_THREADS`: intra-op threads of libtorch.
    pub torch_threads: i32,
    /// `CAIRN_POLL_INTERVAL_MS`: how often an idle worker asks Redis for a job.
    pub poll_interval: Duration,
    /// `CAIRN_HEARTBEAT_INTERVAL_MS`: how often the worker reports alive, renews its lease and
    /// checks for cancel.
    pub heartbeat_interval: Duration,
    /// `CAIRN_LEASE_SECONDS`: how long a run stays this worker's without a renewal; after
    /// that the scheduler gives it to another worker.
    pub lease_duration: Duration,
    /// When a run that failed on the infrastructure is tried again (`CAIRN_MAX_ATTEMPTS`,
    /// `CAIRN_RETRY_BACKOFF_MS`, `CAIRN_RETRY_MAX_BACKOFF_MS`; the scheduler's too).
    pub retry: RetryPolicy,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
        let host = host_name();
        Ok(Self {
            database_url: env_or("CAIRN_DATABASE_URL", Secret::new("postgres://postgres@127.0.0.1:5432/cairn"))?,
            redis_url: env_or("CAIRN_REDIS_URL", Secret::new("redis://127.0.0.1:6379"))?,
            queue_prefix: env_or("CAIRN_QUEUE_PREFIX", "cairn".to_owned())?,
            queues: env_list_or("CAIRN_WORKER_QUEUES", &["default"]),
            data_dir: env_or("CAIRN_DATA_DIR", PathBuf::from("data"))?,
            artifact_dir: env_or("CAIRN_ARTIFACT_DIR", PathBuf::from("artifacts"))?,
            worker_id: env_or("CAIRN_WORKER_ID", format!("{host}-{}", ulid::Ulid::generate()))?,
            torch_threads: env_or("CAIRN_TORCH_THREADS", threads)?,
            poll_interval: Duration::from_millis(env_or("CAIRN_POLL_INTERVAL_MS", 20)?),
            heartbeat_interval: Duration::from_millis(env_or("CAIRN_HEARTBEAT_INTERVAL_MS", 1_000)?),
            lease_duration: Duration::from_secs_f64(env_or("CAIRN_LEASE_SECONDS", 30.0)?),
            retry: RetryPolicy::from_env()?,
        })
    }
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
