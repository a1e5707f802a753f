//! The REST API and the dashboard over HTTP, against a real Postgres.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};

async fn table_counts(env: &TestEnv) -> [i64; 4] {
    [env.count("experiments").await, env.count("runs").await, env.count("metrics").await, env.count("artifacts").await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_run_submissions_record_and_queue_nothing() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let experiment = env.create_experiment("rejections").await;
    let runs = format!("/api/v1/experiments/{experiment}/runs");
    let train = |params: Value| json!({"kind": "train", "params": params});
    let cases: Vec<(&str, String, u16, &str, Option<&str>)> = vec![
        ("epochs 0", train(json!({"dataset": "mnist", "epochs": 0})).to_string(), 422, "invalid_value", Some("params.epochs")),
        ("negative learning rate", train(json!({"dataset": "mnist", "learning_rate": -0.1})).to_string(), 422, "invalid_value", Some("params.learning_rate")),
        ("batch size 0", train(json!({"dataset": "mnist", "batch_size": 0})).to_string(), 422, "invalid_value", Some("params.batch_size")),
        ("batch over the dataset", train(json!({"dataset": "synthetic-digits", "train_range": [0, 10], "validation_range": [10, 20], "batch_size": 11})).to_string(), 422, "invalid_value", Some("params.batch_size")),
        ("unknown dataset", train(json!({"dataset": "cifar"})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("path escape", train(json!({"dataset": "../../etc"})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("range past the end", train(json!({"dataset": "mnist", "train_range": [0, 10001]})).to_string(), 422, "invalid_value", Some("params.train_range")),
        ("unknown field", train(json!({"dataset": "mnist", "epoch": 2})).to_string(), 400, "unknown_field", Some("params.epoch")),
        ("unknown top-level field", json!({"kind": "train", "params": {"dataset": "mnist"}, "owner": "x"}).to_string(), 400, "unknown_field", Some("owner")),
        ("wrong type", train(json!({"dataset": "mnist", "epochs": "two"})).to_string(), 400, "invalid_type", Some("params.epochs")),
        ("unknown kind", json!({"kind": "dance", "params": {"dataset": "mnist"}}).to_string(), 400, "invalid_type", Some("kind")),
        ("missing dataset", train(json!({"epochs": 2})).to_string(), 400, "missing_field", Some("params.dataset")),
        ("huge number", r#"{"kind": "train", "params": {"dataset": "mnist", "epochs": 1e400}}"#.to_owned(), 400, "number_out_of_range", Some("params.epochs")),
        ("malformed JSON", r#"{"kind": "train", "params": "#.to_owned(), 400, "malformed_json", None),
        ("bad queue name", json!({"kind": "train", "params": {"dataset": "mnist"}, "queue": "GPU!"}).to_string(), 422, "invalid_value", Some("queue")),
        ("priority too high", json!({"kind": "train", "params": {"dataset": "mnist"}, "priority": 1_000_000}).to_string(), 422, "invalid_value", Some("priority")),
        ("negative epochs", train(json!({"dataset": "mnist", "epochs": -3})).to_string(), 422, "invalid_value", Some("params.epochs")),
        ("epochs beyond i64", r#"{"kind": "train", "params": {"dataset": "mnist", "epochs": 99999999999999999999}}"#.to_owned(), 400, "invalid_type", Some("params.epochs")),
        ("fractional batch size", train(json!({"dataset": "mnist", "batch_size": 2.5})).to_string(), 400, "invalid_type", Some("params.batch_size")),
        ("NaN learning rate", r#"{"kind": "train", "params": {"dataset": "mnist", "learning_rate": NaN}}"#.to_owned(), 400, "malformed_json", None),
        ("learning rate as string", train(json!({"dataset": "mnist", "learning_rate": "0.1"})).to_string(), 400, "invalid_type", Some("params.learning_rate")),
        ("huge learning rate", train(json!({"dataset": "mnist", "learning_rate": 1e300})).to_string(), 422, "invalid_value", Some("params.learning_rate")),
        ("negative seed", train(json!({"dataset": "mnist", "seed": -1})).to_string(), 422, "invalid_value", Some("params.seed")),
        ("unknown optimizer", train(json!({"dataset": "mnist", "optimizer": "adamw"})).to_string(), 400, "invalid_type", Some("params.optimizer")),
        ("unknown device", train(json!({"dataset": "mnist", "device": "tpu"})).to_string(), 400, "invalid_type", Some("params.device")),
        ("range of three", train(json!({"dataset": "mnist", "train_range": [0, 1, 2]})).to_string(), 422, "invalid_value", Some("params.train_range")),
        ("reversed range", train(json!({"dataset": "mnist", "train_range": [100, 10]})).to_string(), 422, "invalid_value", Some("params.train_range")),
        ("overlapping ranges", train(json!({"dataset": "mnist", "train_range": [0, 100], "validation_range": [50, 150]})).to_string(), 422, "invalid_value", Some("params.validation_range")),
        ("SQL in the dataset", train(json!({"dataset": "mnist'; DROP TABLE runs; --"})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("unicode dataset", train(json!({"dataset": "ｍｎｉｓｔ"})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("absolute dataset path", train(json!({"dataset": "/etc/passwd"})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("1 KB dataset name", train(json!({"dataset": "a".repeat(1000)})).to_string(), 422, "invalid_value", Some("params.dataset")),
        ("params as array", json!({"kind": "train", "params": [1, 2]}).to_string(), 400, "invalid_type", Some("params[0]")),
        ("body as array", json!([{"kind": "train"}]).to_string(), 400, "invalid_type", None),
        ("null body", "null".to_owned(), 400, "invalid_type", None),
        ("evaluate without a parent", json!({"kind": "evaluate", "params": {"dataset": "mnist"}}).to_string(), 422, "invalid_value", Some("parent_run_id")),
        ("train with a parent", json!({"kind": "train", "params": {"dataset": "mnist"}, "parent_run_id": 1}).to_string(), 422, "invalid_value", Some("parent_run_id")),
        ("evaluate of a missing run", json!({"kind": "evaluate", "params": {"dataset": "mnist"}, "parent_run_id": 424242}).to_string(), 422, "invalid_value", Some("parent_run_id")),
        ("empty body", String::new(), 400, "malformed_json", None),
        ("deep nesting", format!("{{\"kind\": \"train\", \"params\": {{\"dataset\": {}{}}}}}", "[".repeat(100_000), "]".repeat(100_000)), 400, "malformed_json", None),
    ];
    for (name, body, status, code, field) in cases {
        let (got_status, got) = env.post_raw(&runs, body).await;
        assert_eq!(got_status, status, "{name}: {got}");
        assert_eq!(got["error"], code, "{name}: {got}");
        assert_eq!(got["field"].as_str(), field, "{name}: {got}");
        assert!(!got["message"].as_str().unwrap().is_empty(), "{name}: {got}");
    }
    let (status, got) = env.post_raw(&runs, vec![b' '; 2 << 20]).await;
    assert_eq!(status, 413, "{got}");
    assert_eq!(got["error"], "payload_too_large");
    // Other endpoints, same rules.
    let one_mb_name = json!({ "name": "n".repeat(1 << 20) }).to_string();
    let experiment_cases: Vec<(String, u16, Option<&str>)> = vec![
        (one_mb_name, 413, None),
        (json!({ "name": "é".repeat(201) }).to_string(), 422, Some("name")),
        (json!({"name": "x", "owner": "y"}).to_string(), 400, Some("owner")),
        (json!({"name": 5}).to_string(), 400, Some("name")),
        (json!({"name": "   "}).to_string(), 422, Some("name")),
    ];
    for (body, status, field) in experiment_cases {
        let (got_status, got) = env.post_raw("/api/v1/experiments", body).await;
        assert_eq!((got_status, got["field"].as_str()), (status, field), "{got}");
        assert!(got["error"].is_string());
    }
    let (status, _) = env.post("/api/v1/experiments/999999/runs", &train(json!({"dataset": "mnist"}))).await;
    assert_eq!(status, 404);

    // Names in other scripts are fine: only a rule can reject a name.
    let (status, body) = env.post("/api/v1/experiments", &json!({"name": "实验 ✓"})).await;
    assert_eq!(status, 201, "{body}");
    // Give the scheduler a sweep to push anything that slipped through.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(table_counts(&env).await, [2, 0, 0, 0]);
    assert!(env.queue_keys().await.is_empty(), "{:?}", env.queue_keys().await);
}

#[tokio::test]
async fn experiments_are_created_listed_and_unique_by_name() {
    let env = TestEnv::new().await;
    let id = env.create_experiment("  baseline  ").await;
    let (status, body) = env.get(&format!("/api/v1/experiments/{id}")).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("baseline")));
    let (status, body) = env.post("/api/v1/experiments", &json!({"name": "baseline"})).await;
    assert_eq!((status, body["error"].as_str(), body["field"].as_str()), (409, Some("name_taken"), Some("name")));
    for bad in [json!({"name": ""}), json!({"name": "x".repeat(201)}), json!({"name": "a\u{0007}b"})] {
        let (status, body) = env.post("/api/v1/experiments", &bad).await;
        assert_eq!((status, body["field"].as_str()), (422, Some("name")), "{body}");
    }
    let (_, list) = env.get("/api/v1/experiments").await;
    assert_eq!(list["experiments"].as_array().unwrap().len(), 1);
    assert_eq!(env.get("/api/v1/experiments/424242").await.0, 404);
    assert_eq!(env.get("/api/v1/experiments/not-a-number").await.0, 404);
}

#[tokio::test]
async fn runs_are_listed_newest_first_in_pages() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("paging").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(env.submit_train(experiment, json!({"dataset": "synthetic-digits"})).await);
    }
    let (_, first) = env.get(&format!("/api/v1/runs?experiment={experiment}&limit=3")).await;
    let page: Vec<i64> = first["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(page, vec![ids[4], ids[3], ids[2]]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = env.get(&format!("/api/v1/runs?experiment={experiment}&limit=3&cursor={cursor}")).await;
    let page: Vec<i64> = second["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(page, vec![ids[1], ids[0]]);
    assert!(second["next_cursor"].is_null());

    let (_, queued) = env.get("/api/v1/runs?status=queued").await;
    assert_eq!(queued["runs"].as_array().unwrap().len(), 5);
    let (_, none) = env.get("/api/v1/runs?status=succeeded").await;
    assert!(none["runs"].as_array().unwrap().is_empty());
    for (query, field) in
        [("status=paused", "status"), ("limit=0", "limit"), ("limit=501", "limit"), ("cursor=abc", "cursor")]
    {
        let (status, body) = env.get(&format!("/api/v1/runs?{query}")).await;
        assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{query}: {body}");
    }
    let (status, body) = env.get("/api/v1/runs?limit=ten").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn metric_batches_are_idempotent_per_run_key_and_step() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("ingest").await;
    let run = env.submit_train(experiment, json!({"dataset": "synthetic-digits"})).await;
    let path = format!("/api/v1/runs/{run}/metrics");
    let points: Vec<Value> =
        (0..10_000).map(|step| json!({"key": "loss", "step": step, "value": 1.0 / (step as f64 + 1.0)})).collect();
    let batch = json!({ "points": points });

    let (status, body) = env.post(&path, &batch).await;
    assert_eq!((status, body["inserted"].as_u64()), (200, Some(10_000)), "{body}");
    let (status, body) = env.post(&path, &batch).await;
    assert_eq!((status, body["inserted"].as_u64()), (200, Some(0)), "a repeated batch adds nothing: {body}");
    let (_, series) = env.get(&format!("{path}?key=loss")).await;
    assert_eq!(series["series"][0]["count"], 10_000);
    assert_eq!(series["series"][0]["points"][1]["value"], 0.5);

    let too_many: Vec<Value> = (0..10_001).map(|step| json!({"key": "loss", "step": step, "value": 0.0})).collect();
    let (status, body) = env.post(&path, &json!({ "points": too_many })).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("points")));
    for (point, field) in [
        (json!({"key": "", "step": 0, "value": 1.0}), "points[0].key"),
        (json!({"key": "a b", "step": 0, "value": 1.0}), "points[0].key"),
        (json!({"key": "loss", "step": -1, "value": 1.0}), "points[0].step"),
    ] {
        let (status, body) = env.post(&path, &json!({ "points": [point] })).await;
        assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{body}");
    }
    let (status, body) = env.post(&path, &json!({"points": [{"key": "loss", "step": 0, "value": null}]})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("points[0].value")), "{body}");
    assert_eq!(
        env.post("/api/v1/runs/999999/metrics", &json!({"points": [{"key": "a", "step": 0, "value": 1.0}]})).await.0,
        404
    );
    assert_eq!(env.count("metrics").await, 10_000);
}

#[tokio::test]
async fn healthz_reports_postgres_and_redis() {
    let env = TestEnv::new().await;
    let (status, body) = env.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"postgres": "ok", "redis": "ok"}));
}

#[tokio::test]
async fn dashboard_pages_render_and_escape_what_users_typed() {
    let env = TestEnv::new().await;
    let hostile = "<script>alert(1)</script>";
    let experiment = env.create_experiment(hostile).await;
    let run = env.submit_train(experiment, json!({"dataset": "synthetic-digits"})).await;

    let (browser, _) = env.browser().await;
    for path in [
        "/".to_owned(),
        format!("/experiments/{experiment}"),
        format!("/experiments/{experiment}/new"),
        format!("/runs/{run}"),
    ] {
        let (status, html) = env.page(&browser, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains(hostile), "{path} shows the name unescaped");
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{path} does not show the name as text");
    }
    let (_, html) = env.page(&browser, &format!("/runs/{run}")).await;
    assert!(
        html.contains("queued") && html.contains("id=\"run-live\" data-live"),
        "a live run is marked for refreshing"
    );
    let script = reqwest::get(env.url("/static/live.js")).await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.unwrap().contains("[data-live]"), "the page's script refreshes what is marked live");
    assert_eq!(env.page(&browser, "/runs/999999").await.0, 404);
}

#[tokio::test]
async fn the_run_form_shows_errors_beside_fields_and_keeps_the_input() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("form").await;
    let (client, csrf) = env.browser().await;
    let url = env.url(&format!("/experiments/{experiment}/new"));
    let form = |epochs: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("dataset", "synthetic-digits".to_owned()),
            ("epochs", epochs.to_owned()),
            ("batch_size", "32".to_owned()),
            ("learning_rate", "0.001".to_owned()),
            ("optimizer", "adam".to_owned()),
            ("seed", "4".to_owned()),
            ("device", "cpu".to_owned()),
        ]
    };

    let response = client.post(&url).form(&form("0")).send().await.unwrap();
    let status = response.status().as_u16();
    let html = response.text().await.unwrap();
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("must be between 1 and 1000"), "the rule is shown");
    assert!(html.contains(r#"name="seed" value="4""#), "the input is kept");
    assert_eq!(env.count("runs").await, 0);

    let response = client.post(&url).form(&form("3")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, run) = env.get(&format!("/api/v1{location}")).await;
    assert_eq!((run["params"]["epochs"].as_i64(), run["params"]["seed"].as_i64()), (Some(3), Some(4)));

    // The same form without its CSRF token is refused and records nothing.
    let mut forged = form("3");
    forged.retain(|(name, _)| *name != "csrf");
    let response = client.post(&url).form(&forged).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(env.count("runs").await, 1);

    // One form, one pipeline: train, prune at three sparsities, quantize and evaluate every model.
    let mut pipeline = form("1");
    pipeline.extend([
        ("prune_sparsities", "0.5, 0.75, 0.9".to_owned()),
        ("prune_method", "global_magnitude".to_owned()),
        ("fine_tune_epochs", "1".to_owned()),
        ("quantize", "on".to_owned()),
        ("evaluate", "on".to_owned()),
    ]);
    let bad: Vec<_> = pipeline
        .iter()
        .map(|(name, value)| (*name, if *name == "prune_sparsities" { "0.5, 2".to_owned() } else { value.clone() }))
        .collect();
    let response = client.post(&url).form(&bad).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert!(response.text().await.unwrap().contains("each must be a number between 0 and 0.99"));
    assert_eq!(env.count("runs").await, 1, "a bad pipeline records nothing");
    let response = client.post(&url).form(&pipeline).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 303);
    // The trained model and three pruned ones, each evaluated and quantized, each int8 model evaluated.
    assert_eq!(env.count("runs").await, 1 + 4 * 4);
    assert_eq!(env.count("runs WHERE kind = 'prune' AND status = 'waiting'").await, 3);
    assert_eq!(env.count("runs WHERE kind = 'evaluate'").await, 8);
}
