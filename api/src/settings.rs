use cairn_domain::settings::{Secret, env_or};
use std::path::PathBuf;

/// The API's settings, read once at start. README.md lists each variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CAIRN_BIND`: address and port to listen on.
    pub bind: String,
    /// `CAIRN_DATABASE_URL`
    pub database_url: Secret,
    /// `CAIRN_REDIS_URL`: only checked by `/healthz`; the scheduler does the pushing.
    pub redis_url: Secret,
    /// `CAIRN_DATA_DIR`: where dataset names resolve, to validate runs before queuing them.
    pub data_dir: PathBuf,
    /// `CAIRN_MAX_BODY_BYTES`: larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// `CAIRN_MAX_UPLOAD_BYTES`: larger uploaded files are refused with 413.
    pub max_upload_bytes: usize,
    /// `CAIRN_WORKERS`: HTTP worker threads.
    pub http_workers: usize,
    /// `CAIRN_ARTIFACT_DIR`: where the workers write artifacts, served after access checks.
    pub artifact_dir: PathBuf,
    /// `CAIRN_RATE_LIMIT_PER_MINUTE`: requests one API token may make per minute.
    pub rate_limit_per_minute: u32,
    /// `CAIRN_SESSION_HOURS`: how long a dashboard sign-in lasts.
    pub session_hours: u32,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        Ok(Self {
            bind: env_or("CAIRN_BIND", "127.0.0.1:8080".to_owned())?,
            database_url: env_or("CAIRN_DATABASE_URL", Secret::new("postgres://postgres@127.0.0.1:5432/cairn"))?,
            redis_url: env_or("CAIRN_REDIS_URL", Secret::new("redis://127.0.0.1:6379"))?,
            data_dir: env_or("CAIRN_DATA_DIR", PathBuf::from("data"))?,
            max_body_bytes: env_or("CAIRN_MAX_BODY_BYTES", 4 << 20)?,
            max_upload_bytes: env_or("CAIRN_MAX_UPLOAD_BYTES", 256 << 20)?,
            http_workers: env_or("CAIRN_WORKERS", 2)?,
            artifact_dir: env_or("CAIRN_ARTIFACT_DIR", PathBuf::from("artifacts"))?,
            rate_limit_per_minute: env_or("CAIRN_RATE_LIMIT_PER_MINUTE", 6_000)?,
            session_hours: env_or("CAIRN_SESSION_HOURS", 12)?,
        })
    }
}
