//! The Redis side of the run queue, in one place so the scheduler that pushes and the worker
//! that takes can never disagree on key names or settings.
//!
//! Redis only wakes workers up: a job names a run and an attempt, and Postgres decides
//! whether that attempt may start. Losing Redis loses nothing, because the scheduler pushes
//! every queued run again; pushing a job twice is a no-op (its task id is fixed).
use anyhow::Context;
use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_core::backend::Vacuum;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use cairn_domain::{RunJob, job::queue_key};
use std::time::Duration;

pub use apalis_redis::ConnectionManager as Connection;

pub type Storage = RedisStorage<RunJob>;

/// A Redis connection that reconnects by itself, with a response timeout long enough for a
/// loaded server (the default 500 ms turns a slow reply into a fatal stream error).
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    apalis_redis::Client::open(url)
        .context("parsing the Redis URL")?
        .get_connection_manager_with_config(config)
        .await
        .context("connecting to Redis")
}

/// The storage of one named queue. Workers take one job at a time (apalis sends no heartbeat
/// for a buffered batch, so other workers would steal it) and re-enqueue the jobs of a worker
/// silent for 30 s.
pub fn storage(conn: ConnectionManager, prefix: &str, queue: &str) -> Storage {
    let config = Config::default()
        .queue(queue_key(prefix, queue))
        .batch_size(1)
        .heartbeat_interval(Duration::from_secs(10))
        .missed_heartbeats(3);
    RedisStorage::new(conn).with_config(config)
}

/// Puts `job` on the queue unless a job with its task id is already there.
pub async fn push(storage: &mut Storage, job: RunJob) -> anyhow::Result<()> {
    let task = TaskBuilder::new(job.clone()).task_id(TaskId::from_string(job.task_id())).build();
    storage.push_task(task).await.with_context(|| format!("pushing {} to Redis", job.task_id()))
}

/// Forgets finished jobs: apalis keeps every job's payload, metadata and result in Redis until
/// vacuumed, so without this Redis grows with every run. Postgres keeps the record.
pub async fn vacuum(storage: &mut Storage) -> anyhow::Result<usize> {
    let removed = storage.vacuum().await.context("vacuuming finished jobs")?;
    let done = storage.get_config().done_jobs_set();
    let _: () =
        redis::cmd("DEL").arg(done).query_async(storage.get_connection()).await.context("clearing the done set")?;
    Ok(removed)
}
