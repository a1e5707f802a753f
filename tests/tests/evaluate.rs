//! Evaluate runs: the checkpoint of a finished train run, measured by a worker.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::time::Duration;

fn last_value(metrics: &Value, key: &str) -> f64 {
    let series =
        metrics["series"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("no {key}"));
    series["points"].as_array().unwrap().last().unwrap()["value"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evaluate_run_measures_its_parents_checkpoint() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("evaluation").await;
    let train = env
        .submit_train(experiment, json!({"dataset": "synthetic-digits", "train_range": [0, 1500], "validation_range": [9000, 9500], "epochs": 1, "batch_size": 30}))
        .await;
    let runs = format!("/api/v1/experiments/{experiment}/runs");
    let evaluate = json!({"kind": "evaluate", "parent_run_id": train, "params": {"dataset": "synthetic-digits", "range": [9000, 9500]}});
    // Submitted while its parent is still queued: it waits, then runs once the parent succeeds.
    let (status, run) = env.post(&runs, &evaluate).await;
    assert_eq!((status, run["status"].as_str()), (201, Some("waiting")), "{run}");
    assert_eq!((run["kind"].as_str(), run["parent_run_id"].as_i64()), (Some("evaluate"), Some(train)));
    let id = run["id"].as_i64().unwrap();
    let run = env.wait_for_status(id, &["succeeded", "failed"], Duration::from_secs(120)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, parent) = env.get(&format!("/api/v1/runs/{train}")).await;
    assert!(run["started_at"].as_str() >= parent["finished_at"].as_str(), "it ran after its parent");

    let (_, trained) = env.get(&format!("/api/v1/runs/{train}/metrics")).await;
    let (_, measured) = env.get(&format!("/api/v1/runs/{id}/metrics")).await;
    assert_eq!(
        last_value(&measured, "accuracy"),
        last_value(&trained, "val_accuracy"),
        "the same model on the same samples"
    );
    assert!((last_value(&measured, "cross_entropy") - last_value(&trained, "val_loss")).abs() < 1e-5);
    let mse = last_value(&measured, "mse");
    assert!(mse > 0.0 && mse < 0.1, "mse {mse}");
    for key in [
        "latency_ms/batch_1/median",
        "latency_ms/batch_64/p95",
        "samples_per_second",
        "model_bytes",
        "nonzero_parameters",
    ] {
        assert!(last_value(&measured, key) > 0.0, "{key}");
    }
    assert!(last_value(&measured, "noise_accuracy/0.3") <= last_value(&measured, "noise_accuracy/0.1") + 0.05);
    for class in 0..10 {
        let recall = last_value(&measured, &format!("recall/{class}"));
        assert!((0.0..=1.0).contains(&recall), "recall/{class} {recall}");
    }

    let artifact = run["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "confusion_matrix").unwrap();
    let response =
        env.http.get(env.url(&format!("/api/v1/runs/{id}/artifacts/{}", artifact["id"]))).send().await.unwrap();
    let confusion: Value = response.json().await.unwrap();
    let total: i64 = confusion["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 500);

    let (browser, _) = env.browser().await;
    let (_, parent_page) = env.page(&browser, &format!("/runs/{train}")).await;
    assert!(
        parent_page.contains("Lineage") && parent_page.contains(&format!("href=\"/runs/{id}\"")),
        "the child is listed"
    );
    let (_, child_page) = env.page(&browser, &format!("/runs/{id}")).await;
    assert!(child_page.contains("Confusion matrix") && child_page.contains(&format!("href=\"/runs/{train}\"")));
}
