//! A run's whole path through the real API, scheduler, Redis queue and worker.
#![allow(clippy::unwrap_used)]

use cairn_domain::{DatasetName, SampleRange};
use cairn_tests::TestEnv;
use cairn_trainer::{
    checkpoint,
    model::{TensorData, evaluate},
};
use serde_json::{Value, json};
use std::time::Duration;

fn small_run(seed: i64) -> Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 1500], "validation_range": [9000, 9500],
           "epochs": 2, "batch_size": 30, "learning_rate": 0.002, "seed": seed, "log_every": 10})
}

fn series<'a>(metrics: &'a Value, key: &str) -> &'a Value {
    metrics["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no series {key} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_submitted_over_rest_trains_and_records_metrics_and_a_reloadable_checkpoint() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("end to end").await;

    let run_id = env.submit_train(experiment, small_run(1)).await;
    let run = env.wait_for_status(run_id, &["succeeded", "failed", "cancelled"], Duration::from_secs(120)).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1);
    assert!(run["worker_id"].as_str().unwrap().starts_with("test-worker-"));
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());
    let (_, metrics) = env.get(&format!("/api/v1/runs/{run_id}/metrics")).await;
    // 1500 samples / 30 = 50 steps per epoch, 100 in all, logged every 10 steps.
    assert_eq!(series(&metrics, "train_loss")["count"], 10);
    for key in ["epoch_train_loss", "val_loss", "val_accuracy"] {
        assert_eq!(series(&metrics, key)["count"], 2, "{key}");
    }
    let logged_accuracy = series(&metrics, "val_accuracy")["points"][1]["value"].as_f64().unwrap();
    assert!(logged_accuracy > 0.8, "validation accuracy {logged_accuracy}");

    let artifacts = run["artifacts"].as_array().unwrap();
    let artifact =
        artifacts.iter().find(|a| a["kind"] == "checkpoint").unwrap_or_else(|| panic!("no checkpoint in {run}"));
    assert!(artifacts.iter().any(|a| a["kind"] == "resume_checkpoint"), "the epoch checkpoint is recorded too");
    let path = env.artifact_dir.join(artifact["path"].as_str().unwrap());
    let (bytes, sha256) = checkpoint::digest(&path).unwrap();
    assert_eq!(artifact["bytes"].as_u64().unwrap(), bytes);
    assert_eq!(artifact["sha256"].as_str().unwrap(), sha256);

    let model = checkpoint::load(&path, tch::Device::Cpu).unwrap();
    let samples = cairn_datasets_for_test::load(&env, SampleRange::new(9000, 9500));
    let reloaded = evaluate(&model.cnn, &TensorData::new(&samples, tch::Device::Cpu));
    assert!(
        (reloaded.accuracy - logged_accuracy).abs() < 1e-9,
        "reloaded {} vs logged {logged_accuracy}",
        reloaded.accuracy
    );

    let (browser, _) = env.browser().await;
    let (status, page) = env.page(&browser, &format!("/runs/{run_id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("succeeded") && page.contains("<svg") && page.contains("model.safetensors"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_seed_trains_to_the_same_metrics() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("determinism").await;

    let first = env.submit_train(experiment, small_run(7)).await;
    let second = env.submit_train(experiment, small_run(7)).await;
    for run in [first, second] {
        let run = env.wait_for_status(run, &["succeeded", "failed"], Duration::from_secs(120)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let values = |run_id: i64| {
        let env = &env;
        async move {
            let rows: Vec<(String, i64, f64)> = sqlx::query_as(
                "SELECT key, step, value FROM metrics WHERE run_id = $1
                 AND key NOT IN ('epoch_seconds', 'samples_per_second') ORDER BY key, step",
            )
            .bind(run_id)
            .fetch_all(&env.pool)
            .await
            .unwrap();
            rows
        }
    };
    let (a, b) = (values(first).await, values(second).await);
    assert_eq!(a.len(), 16);
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_run_stops_it_and_keeps_its_metrics() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("cancel").await;
    let long = json!({"dataset": "synthetic-digits", "train_range": [0, 8000], "validation_range": [8000, 10000],
                      "epochs": 50, "batch_size": 16, "log_every": 10});
    let run_id = env.submit_train(experiment, long).await;
    env.wait_for_status(run_id, &["running"], Duration::from_secs(60)).await;
    // Wait for the first logged points, so there is something to keep.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.count("metrics").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no metrics were written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, body) = env.post(&format!("/api/v1/runs/{run_id}/cancel"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    let run = env.wait_for_status(run_id, &["cancelled", "succeeded", "failed"], Duration::from_secs(5)).await;
    assert_eq!(run["status"], "cancelled");
    let stopped_after: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM finished_at - cancel_requested_at)::float8 FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(stopped_after < 5.0, "the worker stopped {stopped_after:.1} s after the request");
    assert!(env.count("metrics").await > 0, "the points logged before the cancel remain");

    let (status, body) = env.post(&format!("/api/v1/runs/{run_id}/cancel"), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "run_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_past_its_time_limit_fails_with_the_reason_and_keeps_its_metrics() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("time limit").await;
    let long = json!({"kind": "train", "time_limit_seconds": 6, "params": {
        "dataset": "synthetic-digits", "train_range": [0, 8000], "validation_range": [8000, 10000],
        "epochs": 50, "batch_size": 16, "log_every": 10
    }});
    let (status, run) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &long).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.count("metrics").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no metrics were written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = env.wait_for_status(run_id, &["failed", "succeeded", "cancelled"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"], "stopped: past its time limit of 6 s");
    assert!(env.count("metrics").await > 0, "what it logged before the limit remains");
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM run_attempts WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(outcome, "failed");
    let current: Option<i64> =
        sqlx::query_scalar("SELECT current_run_id FROM workers").fetch_one(&env.pool).await.unwrap();
    assert_eq!(current, None, "the queue page no longer shows the worker on it");

    // The worker let go of it: the next run trains.
    let next = env.submit_train(experiment, small_run(1)).await;
    assert_eq!(
        env.wait_for_status(next, &["succeeded", "failed"], Duration::from_secs(60)).await["status"],
        "succeeded"
    );
    let (status, error) = env
        .post(
            &format!("/api/v1/experiments/{experiment}/runs"),
            &json!({"kind": "train", "time_limit_seconds": 0, "params": small_run(1)}),
        )
        .await;
    assert_eq!((status, error["field"].as_str()), (422, Some("time_limit_seconds")), "{error}");
}

/// Loads samples of synthetic-digits the same way the worker does.
mod cairn_datasets_for_test {
    use super::*;

    pub fn load(env: &TestEnv, range: SampleRange) -> cairn_datasets::Samples {
        cairn_datasets::DataDir::new(&env.data_dir)
            .load(&DatasetName::parse("synthetic-digits").unwrap(), range)
            .unwrap()
    }
}
