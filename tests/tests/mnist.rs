//! Real data: the classic CNN on the MNIST test split (train on the first 8,000 images,
//! validate on the last 2,000) through the real API, queue and worker.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_epochs_on_the_mnist_split_reach_96_percent() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("mnist").await;
    let params = json!({"dataset": "mnist", "train_range": [0, 8000], "validation_range": [8000, 10000],
                        "epochs": 2, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam", "seed": 0});
    let run_id = env.submit_train(experiment, params).await;
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(600)).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let (_, metrics) = env.get(&format!("/api/v1/runs/{run_id}/metrics?key=val_accuracy")).await;
    let points = metrics["series"][0]["points"].as_array().unwrap();
    let (_, seconds) = env.get(&format!("/api/v1/runs/{run_id}/metrics?key=epoch_seconds")).await;
    let accuracy: Vec<f64> = points.iter().map(|p| p["value"].as_f64().unwrap()).collect();
    let epoch_seconds: Vec<f64> =
        seconds["series"][0]["points"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    println!("mnist split: validation accuracy per epoch {accuracy:?}, epoch seconds {epoch_seconds:?}");
    assert_eq!(accuracy.len(), 2);
    assert!(accuracy[1] >= 0.96, "validation accuracy after 2 epochs is {}", accuracy[1]);
}
