//! The payload the scheduler puts on Redis and the trainer takes off it.
use crate::RunId;
use serde::{Deserialize, Serialize};

/// Bumped when the payload changes shape, so a worker can recognise jobs it cannot read.
pub const RUN_JOB_VERSION: u32 = 1;

/// "Execute attempt `attempt` of run `run_id`". Everything else (kind, params) is read from
/// Postgres when the job starts: Postgres is the record of truth, the job is only a wake-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunJob {
    pub version: u32,
    pub run_id: RunId,
    pub attempt: i32,
}

impl RunJob {
    pub fn new(run_id: RunId, attempt: i32) -> Self {
        Self { version: RUN_JOB_VERSION, run_id, attempt }
    }

    /// The job's id on the queue. It is derived from the run and attempt, so pushing the same
    /// job twice is a no-op, and the scheduler can push every queued run again after Redis lost
    /// its data without creating duplicates.
    pub fn task_id(&self) -> String {
        format!("run-{}-attempt-{}", self.run_id, self.attempt)
    }
}

/// The Redis key prefix of a named queue. Queue names are validated to `[a-z0-9_-]`.
pub fn queue_key(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{queue}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_is_stable_per_run_and_attempt() {
        let job = RunJob::new(RunId(42), 2);
        assert_eq!(job.task_id(), "run-42-attempt-2");
        assert_ne!(job.task_id(), RunJob::new(RunId(42), 3).task_id());
    }
}
