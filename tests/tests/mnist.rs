//! Real data: the classic CNN on the MNIST test split (train on the first 8,000 images,
//! validate on the last 2,000) through the real API, queue and worker, then pruned (to 90%
//! global magnitude sparsity with one fine-tune epoch, and structured to 50%) and quantized,
//! every model evaluated.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::json;
use std::{collections::HashMap, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mnist_split_reaches_96_percent_and_keeps_it_pruned_to_90_percent() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("mnist").await;
    let evaluate = json!({"kind": "evaluate", "params": {}});
    let pipeline = json!({
        "kind": "train",
        "params": {"dataset": "mnist", "train_range": [0, 8000], "validation_range": [8000, 10000],
                   "epochs": 2, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam", "seed": 0},
        "children": [
            evaluate,
            {"kind": "prune", "params": {"sparsity": 0.9, "method": "global_magnitude", "fine_tune": {"epochs": 1}},
             "children": [evaluate, {"kind": "quantize", "params": {}, "children": [evaluate]}]},
            {"kind": "prune", "params": {"sparsity": 0.5, "method": "structured", "fine_tune": {"epochs": 1}},
             "children": [evaluate]},
            {"kind": "quantize", "params": {}, "children": [evaluate]},
        ]
    });
    let (status, created) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &pipeline).await;
    assert_eq!(status, 201, "{created}");
    let train = created["id"].as_i64().unwrap();
    let train_eval = created["children"][0]["id"].as_i64().unwrap();
    let prune = created["children"][1]["id"].as_i64().unwrap();
    let prune_eval = created["children"][1]["children"][0]["id"].as_i64().unwrap();
    let evaluations = [
        ("trained", train_eval),
        ("pruned 90% global", prune_eval),
        ("pruned 90% global, int8", created["children"][1]["children"][1]["children"][0]["id"].as_i64().unwrap()),
        ("structured 50%", created["children"][2]["children"][0]["id"].as_i64().unwrap()),
        ("int8", created["children"][3]["children"][0]["id"].as_i64().unwrap()),
    ];
    for (_, run) in [("", train), ("", prune)].into_iter().chain(evaluations) {
        let run = env.wait_for_status(run, &["succeeded", "failed", "cancelled"], Duration::from_secs(600)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }

    let (_, metrics) = env.get(&format!("/api/v1/runs/{train}/metrics?key=val_accuracy")).await;
    let points = metrics["series"][0]["points"].as_array().unwrap();
    let (_, seconds) = env.get(&format!("/api/v1/runs/{train}/metrics?key=epoch_seconds")).await;
    let accuracy: Vec<f64> = points.iter().map(|p| p["value"].as_f64().unwrap()).collect();
    let epoch_seconds: Vec<f64> =
        seconds["series"][0]["points"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    println!("mnist split: validation accuracy per epoch {accuracy:?}, epoch seconds {epoch_seconds:?}");
    assert_eq!(accuracy.len(), 2);
    assert!(accuracy[1] >= 0.96, "validation accuracy after 2 epochs is {}", accuracy[1]);

    let values = |run: i64| {
        let env = &env;
        async move {
            env.metric_values(run).await.into_iter().map(|(key, _, value)| (key, value)).collect::<HashMap<_, _>>()
        }
    };
    let pruned = values(prune).await;
    let (dense, sparse) = (values(train_eval).await, values(prune_eval).await);
    for (name, run) in evaluations {
        let m = values(run).await;
        println!(
            "mnist {name}: accuracy {:.4}, cross-entropy {:.4}, {} bytes, {} non-zero parameters, \
             latency b1 {:.3} ms (p95 {:.3}), b64 {:.3} ms (p95 {:.3}), noise 0.1/0.2/0.3 accuracy {:.4}/{:.4}/{:.4}",
            m["accuracy"],
            m["cross_entropy"],
            m["model_bytes"],
            m["nonzero_parameters"],
            m["latency_ms/batch_1/median"],
            m["latency_ms/batch_1/p95"],
            m["latency_ms/batch_64/median"],
            m["latency_ms/batch_64/p95"],
            m["noise_accuracy/0.1"],
            m["noise_accuracy/0.2"],
            m["noise_accuracy/0.3"],
        );
    }
    println!(
        "mnist prune: sparsity {:.4}, accuracy before {:.4}, right after pruning {:.4}, after fine-tuning {:.4}",
        pruned["sparsity"], pruned["accuracy_before"], pruned["accuracy_pruned"], pruned["accuracy_after"]
    );
    assert!((pruned["sparsity"] - 0.9).abs() < 0.005, "sparsity {}", pruned["sparsity"]);
    assert_eq!(pruned["accuracy_before"], accuracy[1], "the parent's model, measured again");
    assert!(
        sparse["accuracy"] >= dense["accuracy"] - 0.015,
        "pruned to 90%: {} against the parent's {}",
        sparse["accuracy"],
        dense["accuracy"]
    );
    assert!(sparse["model_bytes"] < dense["model_bytes"] / 4.0, "the sparse checkpoint is much smaller");
}
