//! Postgres and Redis going away mid-training, for real: Postgres is restarted and Redis
//! flushed, so these tests run alone (see `.config/nextest.toml`).
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn tiny_run() -> Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 200], "validation_range": [9000, 9100], "epochs": 1, "batch_size": 50})
}

fn run_params() -> Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 4000], "validation_range": [9000, 9500],
           "epochs": 3, "batch_size": 16, "seed": 5, "log_every": 5})
}

fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql").unwrap().next().unwrap().unwrap().file_name();
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version.to_str().unwrap(), "main", action])
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_mid_training_loses_no_metric_point() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("postgres restart").await;
    let run_id = env.submit_train(experiment, run_params()).await;
    env.wait_for_status(run_id, &["running"], Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    pg_ctl("stop");
    let stopped_at = Instant::now();
    // While Postgres is away the API answers 503 with Retry-After, promptly.
    let asked = Instant::now();
    let response = env.http.get(env.url(&format!("/api/v1/runs/{run_id}"))).send().await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(waited < Duration::from_secs(5), "the API took {waited:?} to answer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg_ctl("start");
    println!("postgres was down for {:?}", stopped_at.elapsed());

    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(180)).await;
    println!("the run finished {:?} after postgres stopped", stopped_at.elapsed());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1, "the worker kept its run through the outage");
    let during_outage = env.metric_values(run_id).await;

    let again = env.submit_train(experiment, run_params()).await;
    env.wait_for_status(again, &["succeeded"], Duration::from_secs(180)).await;
    let undisturbed = env.metric_values(again).await;
    println!("postgres restart: {} metric points, {} in an undisturbed run", during_outage.len(), undisturbed.len());
    assert_eq!(during_outage, undisturbed, "points were lost or changed during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_queued_runs_are_all_trained_after_a_redis_flushall() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("flushed").await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(env.submit_train(experiment, tiny_run()).await);
    }
    // Wait until the jobs are on Redis, then lose every key: the queues, the worker's
    // registration, the jobs in flight, as a restart without persistence would.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.queue_keys().await.is_empty() {
        assert!(Instant::now() < deadline, "the scheduler pushed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let flushed_at = Instant::now();

    for run_id in runs {
        let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(30)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1, "each run trains once: {run}");
    }
    println!("all five runs succeeded {:?} after the flush", flushed_at.elapsed());
}
