//! The `cairn` command-line client against the real API, scheduler and worker.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::json;
use std::{io::Write, process::Stdio, time::Duration};

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cairn` with this test's API address and token, off the runtime the API serves on.
async fn cairn(env: &TestEnv, args: &[&str], stdin: Option<String>) -> Output {
    let binary = std::env::current_exe().unwrap().parent().and_then(|deps| deps.parent()).unwrap().join("cairn");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (url, token) = (env.url(""), env.token.clone());
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&binary)
            .args(&args)
            .env("CAIRN_URL", url)
            .env("CAIRN_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err} (cargo build --workspace --bins)", binary.display()));
        child.stdin.take().unwrap().write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn small(learning_rate: f64) -> String {
    json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 256], "validation_range": [8000, 8256],
                                       "epochs": 1, "learning_rate": learning_rate}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_wait_status_compare_export_and_sweep_from_the_command_line() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("cli").await.to_string();

    let first = cairn(&env, &["submit", &experiment, "-"], Some(small(0.001))).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first_id = first.stdout.trim().to_owned();
    let waited = cairn(&env, &["wait", &first_id, "--timeout", "120"], None).await;
    assert_eq!(waited.code, 0, "exit 0 for a run that succeeded: {}{}", waited.stdout, waited.stderr);
    assert!(waited.stdout.contains("succeeded"));
    let status = cairn(&env, &["status", &first_id], None).await;
    assert_eq!(status.stdout.trim(), format!("run {first_id} train succeeded attempt 1"));

    let second = cairn(&env, &["submit", &experiment, "-"], Some(small(0.01))).await;
    let second_id = second.stdout.trim().to_owned();
    assert_eq!(cairn(&env, &["wait", &second_id], None).await.code, 0);
    let compared = cairn(&env, &["compare", &first_id, &second_id], None).await;
    assert_eq!(compared.code, 0, "{}", compared.stderr);
    let learning_rate =
        compared.stdout.lines().find(|line| line.starts_with("params.learning_rate")).unwrap_or_default();
    assert!(learning_rate.ends_with("\t0.001\t0.01"), "{}", compared.stdout);
    assert!(!compared.stdout.contains("params.epochs"), "only params that differ");
    assert!(compared.stdout.lines().any(|line| line.starts_with("val_accuracy")), "{}", compared.stdout);

    let exported = cairn(&env, &["export", &experiment, "--format", "csv"], None).await;
    let lines: Vec<&str> = exported.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs: {}", exported.stdout);
    assert!(lines[0].starts_with("id,name,kind,status,created_at,") && lines[0].contains("val_accuracy"));
    let json_export = cairn(&env, &["export", &experiment, "--format", "json"], None).await;
    let rows: serde_json::Value = serde_json::from_str(&json_export.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);

    // A long run cancelled while it trains: `wait` exits 2.
    let long = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 8000],
                      "validation_range": [8000, 10000], "epochs": 50, "batch_size": 16}});
    let long_id = cairn(&env, &["submit", &experiment, "-"], Some(long.to_string())).await.stdout.trim().to_owned();
    env.wait_for_status(long_id.parse().unwrap(), &["running"], Duration::from_secs(60)).await;
    let cancelled = cairn(&env, &["cancel", &long_id], None).await;
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    assert!(cancelled.stdout.contains("stops at its next step"), "{}", cancelled.stdout);
    assert_eq!(cairn(&env, &["wait", &long_id], None).await.code, 2);

    let sweep = json!({"template": serde_json::from_str::<serde_json::Value>(&small(0.001)).unwrap(), "strategy": "grid",
                       "metric": "val_accuracy", "direction": "max", "max_parallel": 2,
                       "space": {"learning_rate": {"type": "choice", "values": [0.001, 0.003]}}});
    let swept = cairn(&env, &["sweep", &experiment, "-"], Some(sweep.to_string())).await;
    assert_eq!(swept.code, 0, "{}", swept.stderr);
    assert_eq!(swept.stdout.lines().count(), 3, "the sweep and its two trials: {}", swept.stdout);
    let sweep_id = swept.stdout.lines().next().unwrap().trim_start_matches("sweep ").to_owned();
    let report = cairn(&env, &["status", "--sweep", &sweep_id], None).await;
    assert!(
        report.stdout.starts_with(&format!("sweep {sweep_id} running")) || report.stdout.contains("finished"),
        "{}",
        report.stdout
    );

    // A sweep of long trials, one at a time, cancelled as a whole.
    let long_sweep = json!({"template": long, "strategy": "grid", "metric": "val_accuracy", "direction": "max",
                            "space": {"learning_rate": {"type": "choice", "values": [0.001, 0.003]}}});
    let swept = cairn(&env, &["sweep", &experiment, "-"], Some(long_sweep.to_string())).await;
    let long_sweep_id = swept.stdout.lines().next().unwrap().trim_start_matches("sweep ").to_owned();
    let cancelled = cairn(&env, &["cancel", "--sweep", &long_sweep_id], None).await;
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    assert!(cancelled.stdout.starts_with(&format!("sweep {long_sweep_id} cancelled: ")), "{}", cancelled.stdout);
    let again = cairn(&env, &["cancel", "--sweep", &long_sweep_id], None).await;
    assert!(again.code == 4 && again.stderr.contains("409"), "a cancelled sweep stays cancelled: {}", again.stderr);

    let refused = cairn(
        &env,
        &["submit", &experiment, "-"],
        Some(json!({"kind": "train", "params": {"dataset": "synthetic-digits", "epochs": 0}}).to_string()),
    )
    .await;
    assert_eq!(refused.code, 4);
    assert!(refused.stderr.contains("422 params.epochs:"), "{}", refused.stderr);
    let usage = cairn(&env, &["frobnicate"], None).await;
    assert_eq!(usage.code, 4);
    assert!(usage.stderr.contains("usage: cairn submit"));
}
