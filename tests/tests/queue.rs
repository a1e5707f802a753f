//! Postgres decides what runs: a queued run is trained even when its push to Redis was lost.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::json;
use std::time::Duration;

fn tiny_run() -> serde_json::Value {
    json!({"dataset": "synthetic-digits", "train_range": [0, 200], "validation_range": [9000, 9100], "epochs": 1, "batch_size": 50})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_committed_without_its_push_is_still_trained() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("lost push").await;
    // No scheduler yet: the run is committed, its notification goes unheard and nothing
    // reaches Redis, as after a crash between the commit and the push.
    let run_id = env.submit_train(experiment, tiny_run()).await;
    assert!(env.queue_keys().await.is_empty());

    let _worker = env.start_worker().await;
    let _scheduler = env.start_scheduler().await;
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_cancelled_while_queued_is_never_trained() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("cancel queued").await;
    let run_id = env.submit_train(experiment, tiny_run()).await;
    let (status, body) = env.post(&format!("/api/v1/runs/{run_id}/cancel"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");

    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    // A later run on the same queue finishing proves the worker was serving it.
    let later = env.submit_train(experiment, tiny_run()).await;
    env.wait_for_status(later, &["succeeded"], Duration::from_secs(60)).await;
    let (_, run) = env.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["attempt"], 0);
    assert!(run["worker_id"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truncated_dataset_fails_the_run_with_the_file_and_the_problem() {
    let data_dir = cairn_tests::data_dir_with_truncated_dataset("broken");

    let env = TestEnv::with_data_dir(data_dir.clone()).await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("broken data").await;
    let run_id = env.submit_train(experiment, json!({"dataset": "broken", "batch_size": 4, "epochs": 1})).await;
    let run = env.wait_for_status(run_id, &["succeeded", "failed"], Duration::from_secs(60)).await;
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("x-images-idx3-ubyte") && error.contains("truncated"), "{error}");
    assert_eq!(run["attempt"], 1, "bad data is not retried");
    std::fs::remove_dir_all(data_dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_do_not_stay_in_redis() {
    let env = TestEnv::new().await;
    // A worker known to serve the queue, so the scheduler vacuums it, but none taking jobs yet.
    sqlx::query("INSERT INTO workers (id, host, device, queues) VALUES ('busy', 'elsewhere', 'cpu', '{default}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let _scheduler = env.start_scheduler().await;
    let experiment = env.create_experiment("vacuum").await;
    let run_id = env.submit_train(experiment, tiny_run()).await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let data = format!("{}:default:data", env.queue_prefix);
    let jobs = async |conn: &mut redis::aio::MultiplexedConnection| -> usize {
        redis::cmd("HLEN").arg(&data).query_async(conn).await.unwrap()
    };
    // A waiting job is kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while jobs(&mut conn).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the job never reached {data}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(jobs(&mut conn).await, 1, "a job still to run was vacuumed");

    // A finished one is not.
    let _worker = env.start_worker().await;
    env.wait_for_status(run_id, &["succeeded"], Duration::from_secs(60)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while jobs(&mut conn).await > 0 {
        assert!(std::time::Instant::now() < deadline, "the finished job is still in {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn higher_priorities_start_first_and_equal_ones_in_submission_order() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("priorities").await;
    let _scheduler = env.start_scheduler().await;
    // No worker yet: every job reaches Redis in submission order before anything starts.
    let submit = |priority: i64| {
        let env = &env;
        async move {
            let body = json!({"kind": "train", "priority": priority, "params": tiny_run()});
            let (status, run) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &body).await;
            assert_eq!(status, 201, "{run}");
            run["id"].as_i64().unwrap()
        }
    };
    let first = submit(0).await;
    let second = submit(0).await;
    let raised = submit(0).await;
    let urgent = submit(5).await;

    let patch = |run: i64, body: serde_json::Value| {
        let env = &env;
        async move {
            let response = env.http.patch(env.url(&format!("/api/v1/runs/{run}"))).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, changed) = patch(raised, json!({"priority": 10})).await;
    assert_eq!((status, changed["priority"].as_i64()), (200, Some(10)), "{changed}");
    let (status, error) = patch(first, json!({"priority": 5000})).await;
    assert_eq!((status, error["field"].as_str()), (422, Some("priority")), "{error}");

    let (_, queues) = env.get("/api/v1/queues").await;
    let queued: Vec<(i64, i64)> = queues["queues"][0]["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| (run["run_id"].as_i64().unwrap(), run["position"].as_i64().unwrap()))
        .collect();
    assert_eq!(queued, [(raised, 1), (urgent, 2), (first, 3), (second, 4)], "{queues}");

    let _worker = env.start_worker().await;
    for run in [first, second, raised, urgent] {
        env.wait_for_status(run, &["succeeded"], Duration::from_secs(120)).await;
    }
    let order: Vec<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE experiment_id = $1 ORDER BY started_at, id")
        .bind(experiment)
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(order, [raised, urgent, first, second], "highest priority first, then first in, first out");
    let (status, error) = patch(first, json!({"priority": 1})).await;
    assert_eq!((status, error["error"].as_str()), (409, Some("run_started")));
}
