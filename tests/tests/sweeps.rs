//! Sweeps: every trial recorded at once with its params, released `max_parallel` at a time by
//! the database, reported with the best trial, and cancelled as a whole.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};
use std::time::Duration;

fn template() -> Value {
    json!({"kind": "train", "params": {
        "dataset": "synthetic-digits", "train_range": [0, 256], "validation_range": [8000, 8256], "epochs": 1
    }})
}

async fn sweep(env: &TestEnv, experiment: i64, body: Value) -> (u16, Value) {
    env.post(&format!("/api/v1/experiments/{experiment}/sweeps"), &body).await
}

/// The sweep's report once it has finished.
async fn wait_finished(env: &TestEnv, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let (_, report) = env.get(&format!("/api/v1/sweeps/{id}")).await;
        if report["sweep"]["status"] == "finished" {
            return report;
        }
        assert!(std::time::Instant::now() < deadline, "the sweep did not finish: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn trial_params(created: &Value, key: &str) -> Vec<Value> {
    created["trials"].as_array().unwrap().iter().map(|t| t["params"][key].clone()).collect()
}

#[tokio::test]
async fn a_two_by_two_grid_records_four_runs_with_each_combination_and_cancels_as_a_whole() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("grid").await;
    let (status, created) = sweep(
        &env,
        experiment,
        json!({
            "template": template(), "strategy": "grid", "max_parallel": 2, "metric": "val_accuracy", "direction": "max",
            "space": {
                "learning_rate": {"type": "choice", "values": [0.001, 0.01]},
                "batch_size": {"type": "choice", "values": [16, 32]}
            }
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(env.count("runs").await, 4);
    let stored: Vec<(f64, i64, String, i32)> = sqlx::query_as(
        "SELECT (params->>'learning_rate')::float8, (params->>'batch_size')::bigint, status, trial FROM runs ORDER BY trial",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let combinations: Vec<(f64, i64)> = stored.iter().map(|(lr, batch, ..)| (*lr, *batch)).collect();
    assert_eq!(combinations, [(0.001, 16), (0.01, 16), (0.001, 32), (0.01, 32)]);
    let statuses: Vec<&str> = stored.iter().map(|(_, _, status, _)| status.as_str()).collect();
    assert_eq!(statuses, ["queued", "queued", "waiting", "waiting"], "two at a time");

    let id = created["sweep"]["id"].as_i64().unwrap();
    let (status, report) = env.get(&format!("/api/v1/sweeps/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(report["counts"], json!({"queued": 2, "waiting": 2}));
    assert_eq!(report["trials"][3]["params"], json!({"batch_size": 32, "learning_rate": 0.01}));
    assert_eq!(report["best"], Value::Null, "nothing measured yet");

    let (status, cancelled) = env.post(&format!("/api/v1/sweeps/{id}/cancel"), &json!({})).await;
    assert_eq!((status, cancelled["cancelled_runs"].as_i64()), (200, Some(4)), "{cancelled}");
    let (_, report) = env.get(&format!("/api/v1/sweeps/{id}")).await;
    assert_eq!(report["sweep"]["status"], "cancelled");
    assert_eq!(report["counts"], json!({"cancelled": 4}));
    let (status, again) = env.post(&format!("/api/v1/sweeps/{id}/cancel"), &json!({})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("sweep_finished")));
}

#[tokio::test]
async fn a_seeded_random_sweep_tries_the_same_params_twice() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("random").await;
    let body = |seed: u64| {
        json!({
            "template": template(), "strategy": "random", "seed": seed, "max_runs": 6, "max_parallel": 6,
            "metric": "val_loss", "direction": "min",
            "space": {
                "learning_rate": {"type": "log_uniform", "low": 0.0001, "high": 0.1},
                "batch_size": {"type": "int_uniform", "low": 8, "high": 64},
                "optimizer": {"type": "choice", "values": ["adam", "sgd"]}
            }
        })
    };
    let (_, first) = sweep(&env, experiment, body(42)).await;
    let (_, second) = sweep(&env, experiment, body(42)).await;
    let (_, other) = sweep(&env, experiment, body(43)).await;
    for key in ["learning_rate", "batch_size", "optimizer"] {
        assert_eq!(trial_params(&first, key), trial_params(&second, key), "{key}");
    }
    assert_ne!(trial_params(&first, "learning_rate"), trial_params(&other, "learning_rate"));
    let stored: Vec<f64> =
        sqlx::query_scalar("SELECT (params->>'learning_rate')::float8 FROM runs WHERE sweep_id = $1 ORDER BY trial")
            .bind(first["sweep"]["id"].as_i64().unwrap())
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let drawn: Vec<f64> = trial_params(&first, "learning_rate").iter().map(|v| v.as_f64().unwrap()).collect();
    // serde_json reads decimals to within one unit in the last place.
    assert!(
        stored.iter().zip(&drawn).all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs()),
        "the runs carry the drawn params"
    );
    assert_eq!(stored.len(), drawn.len());
    assert_eq!(env.count("runs").await, 18);
}

#[tokio::test]
async fn a_sweep_with_one_bad_trial_records_nothing_and_names_the_trial() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("refused").await;
    let (status, error) = sweep(
        &env,
        experiment,
        json!({
            "template": template(), "strategy": "grid", "metric": "val_accuracy", "direction": "max",
            "space": {"epochs": {"type": "choice", "values": [1, 0]}}
        }),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "template.params.epochs");
    assert!(error["message"].as_str().unwrap().contains("trial 1"), "{error}");
    let (status, error) = sweep(
        &env,
        experiment,
        json!({"template": template(), "strategy": "grid", "metric": "x", "direction": "max", "max_parallel": 0,
               "space": {"epochs": {"type": "choice", "values": [1]}}}),
    )
    .await;
    assert_eq!((status, error["field"].as_str()), (422, Some("max_parallel")));
    let space = json!({"learning_rate": {"type": "uniform", "low": 0.001, "high": 0.01}});
    let refused = [
        (
            json!({"strategy": "grid", "replacements": 2, "space": {"epochs": {"type": "choice", "values": [1]}}}),
            "replacements",
        ),
        (json!({"strategy": "random", "max_runs": 2, "replacements": 3, "space": space}), "replacements"),
        (
            json!({"strategy": "random", "space": space,
                "template": {"kind": "train", "parent_run_id": 1, "params": template()["params"]}}),
            "template.parent_run_id",
        ),
    ];
    for (body, field) in refused {
        let mut body = body;
        for (key, value) in [("metric", json!("x")), ("direction", json!("max")), ("template", template())] {
            body.as_object_mut().unwrap().entry(key).or_insert(value);
        }
        let (status, error) = sweep(&env, experiment, body).await;
        assert_eq!((status, error["field"].as_str()), (422, Some(field)), "{error}");
    }
    assert_eq!(env.count("runs").await, 0);
    assert_eq!(env.count("sweeps").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trials_run_max_parallel_at_a_time_and_the_best_is_reported() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("best").await;
    let (status, created) = sweep(
        &env,
        experiment,
        json!({
            "template": template(), "strategy": "grid", "max_parallel": 1, "metric": "val_accuracy", "direction": "max",
            // A learning rate of 5 diverges; 0.003 learns.
            "space": {"learning_rate": {"type": "choice", "values": [5.0, 0.003]}}
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["sweep"]["id"].as_i64().unwrap();
    let report = wait_finished(&env, id).await;
    assert_eq!(report["counts"], json!({"succeeded": 2}), "{report}");
    assert_eq!(report["best"]["params"], json!({"learning_rate": 0.003}), "{report}");
    let (first_finished, second_started): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT (SELECT finished_at FROM runs WHERE sweep_id = $1 AND trial = 0),
                (SELECT started_at FROM runs WHERE sweep_id = $1 AND trial = 1)",
        )
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(second_started >= first_finished, "one trial at a time");

    let (browser, _) = env.browser().await;
    let (status, html) = env.page(&browser, &format!("/sweeps/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"best-trial\"") && html.contains("learning_rate = 0.003"), "the best trial is named");
    assert!(html.contains("aria-label=\"Best val_accuracy so far\""), "the score over time is drawn");
    assert!(html.contains("Params against val_accuracy"), "and the params against it");
    let (_, experiment_page) = env.page(&browser, &format!("/experiments/{experiment}")).await;
    assert!(experiment_page.contains(&format!("href=\"/sweeps/{id}\"")), "the experiment lists its sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asha_stops_the_clearly_worse_trial_at_the_first_rung_and_keeps_its_metrics() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("asha").await;
    let template = json!({"kind": "train", "params": {
        "dataset": "synthetic-digits", "train_range": [0, 1024], "validation_range": [8000, 8256], "epochs": 3
    }});
    let (status, created) = sweep(
        &env,
        experiment,
        json!({
            "template": template, "strategy": "grid", "max_parallel": 1, "metric": "val_accuracy", "direction": "max",
            "asha": {"min_epochs": 1, "reduction_factor": 2},
            "space": {"learning_rate": {"type": "choice", "values": [0.003, 10.0]}}
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["sweep"]["id"].as_i64().unwrap();
    let report = wait_finished(&env, id).await;
    assert_eq!(report["counts"], json!({"stopped_early": 1, "succeeded": 1}), "{report}");
    let (_, listed) = env.get("/api/v1/experiments").await;
    assert_eq!(listed["experiments"][0]["stopped_early"], 1, "the experiments list counts it: {listed}");
    let stopped = &report["trials"][1];
    assert_eq!(stopped["status"], "stopped_early");
    assert_eq!(stopped["error"], "stopped early by ASHA at rung 0 (after epoch 1)");
    let epochs: Vec<i64> =
        sqlx::query_scalar("SELECT step FROM metrics WHERE run_id = $1 AND key = 'val_accuracy' ORDER BY step")
            .bind(stopped["run_id"].as_i64().unwrap())
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(epochs, [1], "its first epoch's metrics are kept, and it trained no further");
    assert_eq!(report["trials"][0]["status"], "succeeded");
    assert_eq!(report["best"]["params"], json!({"learning_rate": 0.003}));
}

#[tokio::test]
async fn a_failed_trial_is_replaced_by_the_next_draw_and_the_sweep_goes_on() {
    let data_dir = cairn_tests::data_dir_with_truncated_dataset("broken");
    let env = TestEnv::with_data_dir(data_dir.clone()).await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("replacements").await;
    // Trials that draw the truncated dataset fail on the worker (bad data: not retried).
    let template = json!({"kind": "train", "params": {
        "train_range": [0, 16], "validation_range": [16, 20], "epochs": 1, "batch_size": 4
    }});
    let (status, created) = sweep(
        &env,
        experiment,
        json!({
            "template": template, "strategy": "random", "seed": 1, "max_runs": 4, "max_parallel": 2,
            "metric": "val_accuracy", "direction": "max",
            "space": {
                "dataset": {"type": "choice", "values": ["synthetic-digits", "broken"]},
                "learning_rate": {"type": "log_uniform", "low": 0.0001, "high": 0.01}
            }
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["trials"].as_array().unwrap().len(), 4);
    assert_eq!(created["spares"], 4, "a random sweep keeps max_runs spares by default");
    let report = wait_finished(&env, created["sweep"]["id"].as_i64().unwrap()).await;

    // Replay the rule on the sweep's draws: each failed trial records the next spare.
    let draws = report["sweep"]["spec"]["trials"].as_array().unwrap();
    assert_eq!(draws.len(), 8, "four trials and four spares");
    let broken = |trial: usize| draws[trial]["dataset"] == "broken";
    let mut recorded = 4;
    for trial in 0..8 {
        if trial < recorded && broken(trial) && recorded < 8 {
            recorded += 1;
        }
    }
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), recorded, "{report}");
    let failed = trials.iter().filter(|t| t["status"] == "failed").count();
    assert!(failed >= 1, "seed 1 draws the broken dataset among the first trials: {report}");
    for trial in trials {
        let expected = if broken(trial["trial"].as_u64().unwrap() as usize) { "failed" } else { "succeeded" };
        assert_eq!(trial["status"], expected, "{trial}");
        assert_eq!(trial["params"], draws[trial["trial"].as_u64().unwrap() as usize]);
    }
    assert_eq!(trials.len() - failed, 4, "every failure was replaced until four trials succeeded: {report}");
    assert_eq!(report["spares_left"], 0, "a finished sweep keeps no spares");
    let (browser, _) = env.browser().await;
    let (status, page) = env.page(&browser, &format!("/sweeps/{}", created["sweep"]["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("replaces a failed trial").count(), trials.len() - 4, "the page marks each replacement");
    let attempts: i32 =
        sqlx::query_scalar("SELECT max(attempt) FROM runs WHERE status = 'failed'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(attempts, 1, "bad data is not retried");
    std::fs::remove_dir_all(data_dir).unwrap();
}
