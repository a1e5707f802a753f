//! Postgres and Redis going away mid-training. Postgres is restarted for real, so this test
//! runs alone (see `.config/nextest.toml`).
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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
