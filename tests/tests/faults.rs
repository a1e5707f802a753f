//! Fault injection with real worker processes: a worker killed with `kill -9` mid-epoch, and
//! a worker stopped with SIGTERM. Either way the run finishes elsewhere, resumed from its
//! last checkpoint, with exactly the metrics of an uninterrupted run.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// About 4 s an epoch on one thread: long enough to stop it in the middle.
fn run_params() -> Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 6000], "validation_range": [9000, 9500],
           "epochs": 3, "batch_size": 16, "seed": 11, "log_every": 25})
}

async fn attempts(env: &TestEnv, run_id: i64) -> Vec<(i32, String, Option<String>)> {
    sqlx::query_as("SELECT attempt, worker_id, outcome FROM run_attempts WHERE run_id = $1 ORDER BY attempt")
        .bind(run_id)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

/// Waits until the run's first epoch checkpoint is recorded and a few steps of epoch 2 ran.
async fn wait_for_second_epoch(env: &TestEnv, run_id: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps: Option<i64> = sqlx::query_scalar(
            "SELECT max(step) FROM metrics WHERE run_id = $1 AND key = 'train_loss'
             AND EXISTS (SELECT 1 FROM artifacts WHERE run_id = $1 AND kind = 'resume_checkpoint')",
        )
        .bind(run_id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        // 6000 / 16 = 375 steps an epoch: stop between steps 400 and 750.
        if steps.is_some_and(|step| step >= 400) {
            return;
        }
        assert!(Instant::now() < deadline, "run {run_id} did not reach its second epoch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Trains the same params without interruption, for comparison.
async fn uninterrupted(env: &TestEnv, experiment: i64) -> Vec<(String, i64, f64)> {
    let run_id = env.submit_train(experiment, run_params()).await;
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(180)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    env.metric_values(run_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_epoch_is_replaced_and_the_run_resumes_from_its_checkpoint() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let mut first = env.spawn_worker_process("worker-a");
    let experiment = env.create_experiment("kill -9").await;
    let run_id = env.submit_train(experiment, run_params()).await;
    env.wait_for_status(run_id, &["running"], Duration::from_secs(60)).await;
    let _second = env.spawn_worker_process("worker-b");
    wait_for_second_epoch(&env, run_id).await;

    first.kill();
    let killed_at = Instant::now();
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(180)).await;
    println!("kill -9: the run finished {:?} after the kill", killed_at.elapsed());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2);
    assert_eq!(run["worker_id"], "worker-b");
    assert_eq!(
        attempts(&env, run_id).await,
        vec![
            (1, "worker-a".to_owned(), Some("lost".to_owned())),
            (2, "worker-b".to_owned(), Some("succeeded".to_owned()))
        ]
    );
    let second_log = std::fs::read_to_string(env.artifact_dir.join("worker-b.log")).unwrap();
    assert!(second_log.contains("resuming from checkpoint"), "worker-b did not resume:\n{second_log}");

    let resumed = env.metric_values(run_id).await;
    assert_eq!(
        resumed,
        uninterrupted(&env, experiment).await,
        "the resumed run's metrics differ from an uninterrupted run's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_hands_the_run_back_and_another_worker_resumes_it() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let mut first = env.spawn_worker_process("worker-a");
    let experiment = env.create_experiment("sigterm").await;
    let run_id = env.submit_train(experiment, run_params()).await;
    wait_for_second_epoch(&env, run_id).await;

    let exit = first.terminate(Duration::from_secs(10));
    println!("SIGTERM: the worker exited after {exit:?}");
    let (_, run) = env.get(&format!("/api/v1/runs/{run_id}")).await;
    assert!(run["status"] == "queued" || run["status"] == "running", "{run}");
    assert!(first.log().contains("run handed back"), "{}", first.log());

    let _second = env.spawn_worker_process("worker-b");
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(180)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2);
    assert_eq!(
        attempts(&env, run_id).await,
        vec![
            (1, "worker-a".to_owned(), Some("handed_back".to_owned())),
            (2, "worker-b".to_owned(), Some("succeeded".to_owned()))
        ]
    );
    let resumed = env.metric_values(run_id).await;
    let whole = uninterrupted(&env, experiment).await;
    println!("SIGTERM: {} metric points resumed, {} uninterrupted", resumed.len(), whole.len());
    assert_eq!(resumed, whole);
}

/// Runs short enough that the retry tests spend their time in backoffs, not training.
fn tiny_params() -> Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 256], "validation_range": [9000, 9064],
           "epochs": 1, "batch_size": 32, "seed": 3})
}

/// Makes the artifact folder's `runs` a file, so saving any checkpoint fails as a full or
/// broken disk would: an infrastructure failure, not the run's.
fn block_checkpoints(env: &TestEnv) -> std::path::PathBuf {
    std::fs::create_dir_all(&env.artifact_dir).unwrap();
    let blocked = env.artifact_dir.join("runs");
    std::fs::write(&blocked, b"not a folder").unwrap();
    blocked
}

async fn attempt_outcomes(env: &TestEnv, run_id: i64) -> Vec<(i32, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT attempt, outcome, error FROM run_attempts WHERE run_id = $1 ORDER BY attempt")
        .bind(run_id)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

/// A scheduler and a worker that both apply this retry policy.
async fn start_with_retries(env: &TestEnv, max_attempts: u32, first_backoff: Duration) -> [cairn_tests::Service; 2] {
    let retry = cairn_domain::RetryPolicy { max_attempts, first_backoff, max_backoff: Duration::from_secs(30) };
    let scheduler = env.start_scheduler_with(cairn_scheduler::Settings { retry, ..env.scheduler_settings() }).await;
    let worker = env.start_worker_with(cairn_trainer::Settings { retry, ..env.worker_settings() }).await;
    [scheduler, worker]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_infrastructure_failure_is_retried_after_its_backoff_and_the_run_then_succeeds() {
    let env = TestEnv::new().await;
    let _services = start_with_retries(&env, 3, Duration::from_secs(2)).await;
    let blocked = block_checkpoints(&env);
    let experiment = env.create_experiment("retries").await;
    let run_id = env.submit_train(experiment, tiny_params()).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while attempt_outcomes(&env, run_id).await.first().is_none_or(|(_, outcome, _)| outcome.is_none()) {
        assert!(Instant::now() < deadline, "the first attempt did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, run) = env.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "queued", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.starts_with("attempt 1: ") && error.ends_with("retrying after 2.0 s"), "{error}");
    let waiting: bool = sqlx::query_scalar("SELECT retry_at > now() FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(waiting, "the run is held back until its backoff is over");
    std::fs::remove_file(&blocked).unwrap();

    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts = attempt_outcomes(&env, run_id).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].1.as_deref(), Some("infra_failed"));
    assert!(attempts[0].2.as_deref().unwrap().contains("runs"), "the error names the path: {attempts:?}");
    assert_eq!(attempts[1].1.as_deref(), Some("succeeded"));
    let gap: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM b.started_at - a.ended_at)::float8 FROM run_attempts a, run_attempts b
         WHERE a.run_id = $1 AND b.run_id = $1 AND a.attempt = 1 AND b.attempt = 2",
    )
    .bind(run_id)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(gap >= 2.0, "the second attempt started {gap:.2} s after the first failed, inside its backoff");
    let free: Option<i64> =
        sqlx::query_scalar("SELECT current_run_id FROM workers").fetch_one(&env.pool).await.unwrap();
    assert_eq!(free, None, "the worker is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_fails_once_its_attempts_are_spent_on_infrastructure_failures() {
    let env = TestEnv::new().await;
    let _services = start_with_retries(&env, 2, Duration::from_millis(300)).await;
    block_checkpoints(&env);
    let experiment = env.create_experiment("retries spent").await;
    let run_id = env.submit_train(experiment, tiny_params()).await;

    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.starts_with("2 attempts failed on infrastructure problems") && error.ends_with("not retried again"),
        "{error}"
    );
    let outcomes: Vec<_> =
        attempt_outcomes(&env, run_id).await.into_iter().map(|(n, outcome, _)| (n, outcome)).collect();
    assert_eq!(outcomes, [(1, Some("infra_failed".to_owned())), (2, Some("infra_failed".to_owned()))]);
}
