//! Pipelines through the real API, scheduler, queue and worker: a tree of runs submitted at
//! once, each child waiting for its parent; pruning, quantization, ensembles and predictions.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::{collections::HashMap, io::Write, time::Duration};

const TIMEOUT: Duration = Duration::from_secs(240);

/// Every run id of a created tree, depth first.
fn ids(created: &Value) -> Vec<i64> {
    let children = created["children"].as_array().unwrap().iter().flat_map(ids);
    std::iter::once(created["id"].as_i64().unwrap()).chain(children).collect()
}

/// An artifact's file as text, through the REST API.
async fn download(env: &TestEnv, run: &Value, artifact: &Value) -> String {
    let url = env.url(&format!("/api/v1/runs/{}/artifacts/{}", run["id"], artifact["id"]));
    env.http.get(url).send().await.unwrap().text().await.unwrap()
}

async fn metrics(env: &TestEnv, run: i64) -> HashMap<String, f64> {
    env.metric_values(run).await.into_iter().map(|(key, _, value)| (key, value)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_trains_prunes_quantizes_and_evaluates_in_order() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("compression").await;
    let evaluate = json!({"kind": "evaluate", "params": {}});
    let pipeline = json!({
        "kind": "train",
        "params": {"dataset": "synthetic-digits", "train_range": [0, 2000], "validation_range": [9000, 9500], "epochs": 1},
        "children": [
            evaluate,
            {"kind": "prune", "params": {"sparsity": 0.8, "fine_tune": {"epochs": 1}}, "children": [evaluate]},
            {"kind": "prune", "params": {"sparsity": 0.5, "method": "layer_magnitude", "fine_tune": {"epochs": 0}}},
            {"kind": "prune", "params": {"sparsity": 0.5, "method": "structured"}, "children": [evaluate]},
            {"kind": "quantize", "params": {}, "children": [evaluate]},
            {"kind": "predict", "params": {"range": [9000, 9010]}},
        ]
    });
    let (status, created) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &pipeline).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "queued");
    let children = created["children"].as_array().unwrap();
    assert_eq!(children.len(), 6);
    assert!(children.iter().all(|child| child["status"] == "waiting" && child["parent_run_id"] == created["id"]));
    let all = ids(&created);
    assert_eq!(all.len(), 10);

    let mut runs = HashMap::new();
    for id in &all {
        let run = env.wait_for_status(*id, &["succeeded", "failed", "cancelled"], TIMEOUT).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        runs.insert(*id, run);
    }
    // Every child started after its parent finished.
    for run in runs.values() {
        if let Some(parent) = run["parent_run_id"].as_i64() {
            let parent_finished = runs[&parent]["finished_at"].as_str().unwrap();
            assert!(run["started_at"].as_str().unwrap() >= parent_finished, "{run} started before its parent finished");
        }
    }

    let by_path = |path: &[usize]| {
        let mut node = &created;
        for index in path {
            node = &node["children"][index];
        }
        node["id"].as_i64().unwrap()
    };
    let train = metrics(&env, by_path(&[])).await;
    let global = metrics(&env, by_path(&[1])).await;
    assert!((global["sparsity"] - 0.8).abs() < 0.005, "global sparsity {}", global["sparsity"]);
    assert_eq!(global["accuracy_before"], train["val_accuracy"]);
    assert!(global["checkpoint_bytes/sparse"] < global["checkpoint_bytes/dense"] / 3.0);
    let layerwise = metrics(&env, by_path(&[2])).await;
    for layer in ["conv1", "conv2", "fc1", "fc2"] {
        let sparsity = layerwise[&format!("sparsity/{layer}")];
        assert!((sparsity - 0.5).abs() < 0.005, "{layer}: {sparsity}");
    }
    let structured = metrics(&env, by_path(&[3])).await;
    assert!((structured["sparsity"] - 0.5).abs() < 0.005);
    assert!(structured["parameters"] < 121_930.0 / 2.0, "a smaller model: {}", structured["parameters"]);
    let quantized = metrics(&env, by_path(&[4])).await;
    assert!(quantized["bytes_after"] <= 0.3 * quantized["bytes_before"], "{quantized:?}");
    assert!((quantized["accuracy_after"] - quantized["accuracy_before"]).abs() <= 0.01, "{quantized:?}");

    // Each evaluation measured its own parent's model, as stored.
    for (evaluation, model) in [(vec![0], vec![]), (vec![1, 0], vec![1]), (vec![3, 0], vec![3]), (vec![4, 0], vec![4])]
    {
        let measured = metrics(&env, by_path(&evaluation)).await;
        let model_run = &runs[&by_path(&model)];
        let checkpoint = model_run["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "checkpoint").unwrap();
        assert_eq!(measured["model_bytes"], checkpoint["bytes"].as_f64().unwrap(), "evaluation {evaluation:?}");
    }
    let pruned_eval = metrics(&env, by_path(&[1, 0])).await;
    assert_eq!(pruned_eval["accuracy"], global["accuracy_after"], "the sparse checkpoint reloads the fine-tuned model");

    let predict = &runs[&by_path(&[5])];
    let artifact = predict["artifacts"].as_array().unwrap().iter().find(|a| a["kind"] == "predictions").unwrap();
    let csv = download(&env, predict, artifact).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,label,predicted,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9");
    assert_eq!(lines.len(), 11);
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[0], "9000");
    let total: f64 = first[3..].iter().map(|p| p.parse::<f64>().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");

    // The dashboard lists the file and serves it to a signed-in browser too.
    let (browser, _) = env.browser().await;
    let download = format!("/runs/{}/artifacts/{}", predict["id"], artifact["id"]);
    let (_, run_page) = env.page(&browser, &format!("/runs/{}", predict["id"])).await;
    assert!(run_page.contains(&format!("href=\"{download}\"")), "the run page links the CSV");
    assert_eq!(env.page(&browser, &download).await, (200, csv.clone()));

    // The experiment page weighs the models against each other.
    let (_, page) = env.page(&browser, &format!("/experiments/{experiment}")).await;
    assert!(page.contains("Compression trade-off") && page.contains("<svg"), "trade-off chart");
    for model in [by_path(&[]), by_path(&[1]), by_path(&[3]), by_path(&[4])] {
        assert!(page.contains(&format!("href=\"/runs/{model}\"")), "model {model} in the trade-off table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_parent_cancels_its_waiting_descendants() {
    // A dataset whose header promises more images than the file holds: it validates (only the
    // header is read then) and fails when the worker loads it.
    let data_dir = std::env::temp_dir().join(format!("cairn-truncated-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(data_dir.join("broken")).unwrap();
    let header = |magic: u32, dims: &[u32]| {
        let mut bytes = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
        bytes
    };
    let mut images = std::fs::File::create(data_dir.join("broken/train-images-idx3-ubyte")).unwrap();
    images.write_all(&header(0x803, &[100, 28, 28])).unwrap();
    images.write_all(&[0u8; 28 * 28]).unwrap();
    let mut labels = header(0x801, &[100]);
    labels.extend([0u8; 100]);
    std::fs::write(data_dir.join("broken/train-labels-idx1-ubyte"), labels).unwrap();

    let env = TestEnv::with_data_dir(data_dir.clone()).await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("doomed").await;
    let pipeline = json!({
        "kind": "train", "params": {"dataset": "broken"},
        "children": [{"kind": "prune", "params": {"sparsity": 0.5}, "children": [{"kind": "evaluate", "params": {}}]}]
    });
    let (status, created) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &pipeline).await;
    assert_eq!(status, 201, "{created}");
    let [train, prune, evaluate] = ids(&created)[..] else { panic!("three runs: {created}") };
    let run = env.wait_for_status(train, &["succeeded", "failed"], TIMEOUT).await;
    assert_eq!(run["status"], "failed", "{run}");
    let prune = env.wait_for_status(prune, &["cancelled"], Duration::from_secs(10)).await;
    assert_eq!(prune["error"], format!("parent run {train} failed"));
    let evaluate = env.wait_for_status(evaluate, &["cancelled"], Duration::from_secs(10)).await;
    assert_eq!(evaluate["error"], format!("parent run {} cancelled", prune["id"]));
    assert!(evaluate["started_at"].is_null(), "never started");
    std::fs::remove_dir_all(data_dir).unwrap();
}

#[tokio::test]
async fn a_pipeline_is_validated_whole_before_anything_is_recorded() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("strict").await;
    let runs = format!("/api/v1/experiments/{experiment}/runs");
    let train = json!({"dataset": "synthetic-digits"});
    let cases = [
        (
            json!({"kind": "train", "params": train, "children": [{"kind": "prune", "params": {"sparsity": 0.5},
                "children": [{"kind": "evaluate", "params": {"range": [0, 20_000]}}]}]}),
            "children[0].children[0].params.range",
        ),
        (
            json!({"kind": "train", "params": train, "children": [{"kind": "prune", "params": {"sparsity": 1.5}}]}),
            "children[0].params.sparsity",
        ),
        (
            json!({"kind": "train", "params": train, "children": [{"kind": "evaluate", "params": {}, "children": [{"kind": "evaluate", "params": {}}]}]}),
            "children[0].children",
        ),
        (
            json!({"kind": "train", "params": train, "children": [{"kind": "train", "params": train}]}),
            "children[0].kind",
        ),
        (
            json!({"kind": "train", "params": train, "children": [{"kind": "quantize", "params": {}, "children": [{"kind": "prune", "params": {"sparsity": 0.5}}]}]}),
            "children[0].children[0].kind",
        ),
        (json!({"kind": "prune", "params": {"sparsity": 0.5}}), "parent_run_id"),
        (json!({"kind": "evaluate", "params": {}, "parent_run_id": 999_999}), "parent_run_id"),
    ];
    for (body, field) in cases {
        let (status, error) = env.post(&runs, &body).await;
        assert_eq!((status, error["field"].as_str()), (422, Some(field)), "{body}: {error}");
    }
    assert_eq!(env.count("runs").await, 0, "nothing recorded");

    // A child of an existing run waits for it, and cancelling the parent cancels the child.
    let parent = env.submit_train(experiment, train.clone()).await;
    let child = json!({"kind": "evaluate", "params": {}, "parent_run_id": parent});
    let (status, created) = env.post(&runs, &child).await;
    assert_eq!((status, created["status"].as_str()), (201, Some("waiting")), "{created}");
    let (status, _) = env.post(&format!("/api/v1/runs/{parent}/cancel"), &json!({})).await;
    assert_eq!(status, 200);
    let (_, child) = env.get(&format!("/api/v1/runs/{}", created["id"])).await;
    assert_eq!(
        (child["status"].as_str(), child["error"].as_str()),
        (Some("cancelled"), Some(&*format!("parent run {parent} cancelled")))
    );
    let (status, error) = env.post(&runs, &json!({"kind": "evaluate", "params": {}, "parent_run_id": parent})).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (422, Some("parent_run_id")),
        "a cancelled run has no model: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ensemble_averages_models_and_a_prediction_reads_an_uploaded_file() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("together").await;
    let params = |seed| json!({"dataset": "synthetic-digits", "train_range": [0, 1000], "validation_range": [9000, 9300], "epochs": 1, "seed": seed});
    let (a, b) = (env.submit_train(experiment, params(1)).await, env.submit_train(experiment, params(2)).await);
    for run in [a, b] {
        assert_eq!(env.wait_for_status(run, &["succeeded", "failed"], TIMEOUT).await["status"], "succeeded");
    }
    let runs = format!("/api/v1/experiments/{experiment}/runs");
    let (status, ensemble) =
        env.post(&runs, &json!({"kind": "ensemble", "parent_run_id": a, "params": {"members": [b]}})).await;
    assert_eq!(status, 201, "{ensemble}");
    let ensemble = env.wait_for_status(ensemble["id"].as_i64().unwrap(), &["succeeded", "failed"], TIMEOUT).await;
    assert_eq!(ensemble["status"], "succeeded", "{ensemble}");
    let averaged = metrics(&env, ensemble["id"].as_i64().unwrap()).await;
    let (first, second) = (metrics(&env, a).await, metrics(&env, b).await);
    assert_eq!(averaged["models"], 2.0);
    assert!(averaged["accuracy"] > 0.5, "{averaged:?}");
    let bytes = |run: &Value| {
        run["artifacts"].as_array().unwrap().iter().find(|x| x["kind"] == "checkpoint").unwrap()["bytes"]
            .as_f64()
            .unwrap()
    };
    let (_, run_a) = env.get(&format!("/api/v1/runs/{a}")).await;
    let (_, run_b) = env.get(&format!("/api/v1/runs/{b}")).await;
    assert_eq!(averaged["model_bytes"], bytes(&run_a) + bytes(&run_b));
    assert!(
        averaged["cross_entropy"] < first["val_loss"].max(second["val_loss"]),
        "averaging does not do worse than the worse model"
    );

    // Five images as a gzipped IDX file; a bad file is refused and not kept.
    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28];
    for index in 0..5 {
        idx.extend(cairn_datasets::synthetic::sample(9000 + index).0);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx).unwrap();
    let upload_url = env.url(&format!("/api/v1/experiments/{experiment}/uploads?file_name=five.idx.gz"));
    let response = env.http.post(&upload_url).body(b"not an idx file".to_vec()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(env.count("uploads").await, 0);
    let response = env.http.post(&upload_url).body(gz.finish().unwrap()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let upload: Value = response.json().await.unwrap();
    assert_eq!(upload["images"], 5);
    let (status, predict) =
        env.post(&runs, &json!({"kind": "predict", "parent_run_id": a, "params": {"upload_id": upload["id"]}})).await;
    assert_eq!(status, 201, "{predict}");
    let predict = env.wait_for_status(predict["id"].as_i64().unwrap(), &["succeeded", "failed"], TIMEOUT).await;
    assert_eq!(predict["status"], "succeeded", "{predict}");
    let artifact = predict["artifacts"].as_array().unwrap().iter().find(|x| x["kind"] == "predictions").unwrap();
    let csv = download(&env, &predict, artifact).await;
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter().enumerate().all(|(i, row)| row.starts_with(&format!("{i},,"))),
        "no labels in an upload: {csv}"
    );
}
