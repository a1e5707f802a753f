//! The dashboard's pages over HTTP: each renders its key content, escapes what users typed,
//! and filters, sorts, pages, compares and exports what the database holds. Runs are
//! submitted through the real API, then finished and given metrics in SQL, so these tests
//! need no training.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::json;

const EVIL: &str = "<script>alert(1)</script>";
// askama writes `<` and `>` as numeric character references.
const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

/// Submits a named train run with `learning_rate` and returns its id (queued: no worker runs).
async fn submit(env: &TestEnv, experiment: i64, name: &str, learning_rate: f64) -> i64 {
    let body = json!({"kind": "train", "name": name, "params": {
        "dataset": "synthetic-digits", "train_range": [0, 64], "validation_range": [64, 96], "learning_rate": learning_rate
    }});
    let (status, run) = env.post(&format!("/api/v1/experiments/{experiment}/runs"), &body).await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_i64().unwrap()
}

/// Ends a run as `status` with one attempt on a worker, and a curve of `val_accuracy` ending
/// at `accuracy` and of `val_loss` ending at `1 - accuracy`.
async fn finish(env: &TestEnv, run: i64, status: &str, accuracy: f64) {
    sqlx::query(
        "INSERT INTO workers (id, host, device, queues) VALUES ('w-1', 'host-1', 'cpu (2 threads)', '{default}')
         ON CONFLICT (id) DO NOTHING",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE runs SET status = $2, attempt = 1, worker_id = 'w-1', started_at = now() - interval '90 minutes',
                finished_at = now() - interval '30 minutes' WHERE id = $1",
    )
    .bind(run)
    .bind(status)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_attempts (run_id, attempt, worker_id, started_at, ended_at, outcome)
         VALUES ($1, 1, 'w-1', now() - interval '90 minutes', now() - interval '30 minutes', $2)",
    )
    .bind(run)
    .bind(status)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO metrics (run_id, key, step, value)
         SELECT $1, 'val_accuracy', s, $2 * s / 3.0 FROM generate_series(1, 3) s
         UNION ALL SELECT $1, 'val_loss', s, 1 - $2 * s / 3.0 FROM generate_series(1, 3) s",
    )
    .bind(run)
    .bind(accuracy)
    .execute(&env.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn every_page_renders_its_content_and_shows_what_users_typed_as_text() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment(EVIL).await;
    let evil = submit(&env, experiment, EVIL, 0.001).await;
    let plain = submit(&env, experiment, "baseline", 0.01).await;
    finish(&env, evil, "succeeded", 0.97).await;
    finish(&env, plain, "failed", 0.5).await;
    sqlx::query("INSERT INTO run_logs (run_id, attempt, at, level, message) VALUES ($1, 1, now(), 'info', $2)")
        .bind(evil)
        .bind(format!("training epoch=1 step=50 note={EVIL}"))
        .execute(&env.pool)
        .await
        .unwrap();
    let queued = submit(&env, experiment, "waiting in line", 0.1).await;
    let (browser, _) = env.browser().await;

    let pages = [
        ("/".to_owned(), vec!["97.00%", "Cancelled"]),
        (format!("/experiments/{experiment}"), vec!["baseline", "val_accuracy", "Compare selected", "3 runs"]),
        (format!("/experiments/{experiment}/new"), vec!["Learning rate", "Prune at sparsities"]),
        (
            format!("/runs/{evil}"),
            vec!["Timeline", "attempt 1 started on w-1", "training epoch=1 step=50", "metrics.csv"],
        ),
        (
            format!("/compare?runs={evil},{plain}"),
            vec!["Compare 2 runs", "learning_rate", "path class=\"series\"", "Params against val_accuracy"],
        ),
        ("/history".to_owned(), vec!["Success rate", "50.0% of 2 finished", "cpu (2 threads): 2.00 h", "baseline"]),
        ("/queue".to_owned(), vec!["Queued (1)", "waiting in line", "Workers"]),
    ];
    for (path, expected) in pages {
        let (status, html) = env.page(&browser, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
        for text in expected {
            assert!(html.contains(text), "{path} lacks `{text}`");
        }
        assert!(!html.contains(EVIL), "{path} shows a user's text as markup");
        if path != "/queue" && path != format!("/experiments/{experiment}/new") {
            assert!(html.contains(ESCAPED), "{path} shows the escaped name");
        }
    }
    let (_, queue) = env.page(&browser, "/queue").await;
    assert!(queue.contains(&format!("#{queued}")));

    let (status, csv) = env.page(&browser, "/history.csv").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three runs: {csv}");
    assert!(lines[0].starts_with("id,name,status,kind,created,Experiment,Submitter,dataset"));
    assert!(csv.contains(EVIL), "CSV is not HTML: the name stays as typed");
    let (status, csv) = env.page(&browser, &format!("/runs/{evil}/metrics.csv?key=val_loss")).await;
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("key,step,value,recorded_at\r\nval_loss,1,"), "{csv}");
}

#[tokio::test]
async fn the_runs_table_filters_sorts_pages_and_explains_a_bad_filter() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("sweep").await;
    let mut runs = Vec::new();
    for i in 0..60 {
        let learning_rate = if i % 2 == 0 { 0.001 } else { 0.1 };
        let run = submit(&env, experiment, &format!("trial-{i:02}"), learning_rate).await;
        finish(&env, run, "succeeded", 0.90 + i as f64 / 1000.0).await;
        runs.push(run);
    }
    let (browser, _) = env.browser().await;
    let table = |query: &str| format!("/experiments/{experiment}?{query}");
    let names = |html: &str| -> Vec<String> {
        html.split("<tr id=\"run-").skip(1).map(|row| row.split('"').next().unwrap().to_owned()).collect()
    };

    let (status, html) = env.page(&browser, &table("")).await;
    assert_eq!(status, 200);
    assert!(html.contains("60 runs · page 1 of 2"));
    assert_eq!(names(&html).len(), 50, "50 runs a page");
    assert_eq!(names(&html)[0], runs[59].to_string(), "newest first by default");
    let (_, page_two) = env.page(&browser, &table("page=2")).await;
    assert_eq!(names(&page_two).len(), 10);

    // Accuracy 0.90 + i/1000: above 0.9505 are i = 51..59; with lr < 0.01, the even ones.
    let filter = "filter=val_accuracy+%3E+0.9505+and+lr+%3C+0.01&sort=metric%3Aval_accuracy";
    let (status, html) = env.page(&browser, &table(filter)).await;
    assert_eq!(status, 200);
    let expected: Vec<String> = [58, 56, 54, 52].iter().map(|i| runs[*i].to_string()).collect();
    assert_eq!(names(&html), expected, "filtered, best accuracy first");
    assert!(html.contains("4 runs"));
    let (_, ascending) = env.page(&browser, &table(&format!("{filter}&order=asc"))).await;
    assert_eq!(names(&ascending), expected.iter().rev().cloned().collect::<Vec<_>>());
    let (_, by_name) =
        env.page(&browser, &table("sort=name&order=asc&filter=name+%3D+trial-03+and+status+%3D+succeeded")).await;
    assert_eq!(names(&by_name), [runs[3].to_string()]);
    let (_, by_param) = env.page(&browser, &table("sort=param%3Alearning_rate&order=desc")).await;
    assert_eq!(names(&by_param)[0], runs[59].to_string(), "lr 0.1 first, newest first among equals");
    assert!(by_param.contains("sort=param%3Alearning_rate&#38;order=asc"), "the active header reverses the order");

    let (status, html) = env.page(&browser, &table("filter=val_accuracy+%3E")).await;
    assert_eq!(status, 400);
    assert!(html.contains("filter: at character 15: expected a value after `val_accuracy`"), "{html}");
    assert!(html.contains("value=\"val_accuracy &#62;\""), "the user's filter stays in the box");
}

#[tokio::test]
async fn compare_marks_differences_and_the_best_and_refuses_bad_selections() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("compare").await;
    let a = submit(&env, experiment, "slow", 0.001).await;
    let b = submit(&env, experiment, "fast", 0.01).await;
    finish(&env, a, "succeeded", 0.9).await;
    finish(&env, b, "succeeded", 0.95).await;
    let (browser, _) = env.browser().await;

    let (status, html) = env.page(&browser, &format!("/compare?runs={a}&runs={b}&diff=1")).await;
    assert_eq!(status, 200);
    let params = html.split("class=\"compare params\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(params.contains("learning_rate") && params.contains("class=\"differs\""));
    assert!(!params.contains("batch_size"), "only differences: equal params are hidden");
    let metrics = html.split("class=\"compare metrics\"").nth(1).unwrap().split("</table>").next().unwrap();
    let loss_row = metrics.split("<th>val_loss</th>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(loss_row.contains("<td class=\"num best\">0.0500</td>"), "lowest loss is best: {loss_row}");
    let accuracy_row = metrics.split("<th>val_accuracy</th>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(accuracy_row.contains("<td class=\"num best\">0.9500</td>"), "highest accuracy is best: {accuracy_row}");
    assert_eq!(html.matches("path class=\"series\"").count(), 4, "two curves on each of two charts");

    // Curves are cached as drawn; a point logged later makes the cache stale and it is rebuilt.
    let cached = |run: i64| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT points FROM metric_overviews WHERE run_id = $1 AND key = 'val_loss'")
                .bind(run)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(cached(a).await, 3);
    sqlx::query("INSERT INTO metrics (run_id, key, step, value) VALUES ($1, 'val_loss', 4, 0.01)")
        .bind(a)
        .execute(&env.pool)
        .await
        .unwrap();
    let (_, html) = env.page(&browser, &format!("/compare?runs={a},{b}")).await;
    assert_eq!(cached(a).await, 4, "the stale curve was rebuilt");
    let loss_row = html.split("<th>val_loss</th>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(loss_row.contains("<td class=\"num best\">0.0100</td>"), "{loss_row}");

    let (status, html) = env.page(&browser, &format!("/compare?runs={a}")).await;
    assert_eq!(status, 400);
    assert!(html.contains("pick 2 to 50 runs"));
    let stranger = env.user("team-b", "bob", "admin").await;
    let response = stranger.post(env.url("/api/v1/experiments")).json(&json!({"name": "theirs"})).send().await.unwrap();
    let their_experiment = response.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap();
    let theirs = submit_as(&env, &stranger, their_experiment).await;
    let (status, html) = env.page(&browser, &format!("/compare?runs={a},{theirs}")).await;
    assert_eq!(status, 404, "another team's run is not shown");
    assert!(html.contains(&format!("#{theirs} not found")));
}

async fn submit_as(env: &TestEnv, client: &reqwest::Client, experiment: i64) -> i64 {
    let body = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 64], "validation_range": [64, 96]}});
    let response =
        client.post(env.url(&format!("/api/v1/experiments/{experiment}/runs"))).json(&body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap()
}

#[tokio::test]
async fn history_filters_by_date_status_kind_experiment_and_submitter_and_exports_the_same() {
    let env = TestEnv::new().await;
    let first = env.create_experiment("first").await;
    let second = env.create_experiment("second").await;
    let old = submit(&env, first, "old", 0.001).await;
    let ok = submit(&env, first, "ok", 0.001).await;
    let broken = submit(&env, second, "broken", 0.001).await;
    finish(&env, old, "succeeded", 0.9).await;
    finish(&env, ok, "succeeded", 0.9).await;
    finish(&env, broken, "failed", 0.1).await;
    sqlx::query("UPDATE runs SET created_at = '2026-01-15T12:00:00Z' WHERE id = $1")
        .bind(old)
        .execute(&env.pool)
        .await
        .unwrap();
    let alice: i64 =
        sqlx::query_scalar("SELECT id FROM users WHERE name = 'alice'").fetch_one(&env.pool).await.unwrap();
    let (browser, _) = env.browser().await;
    let rows = |html: &str| html.matches("<tr id=\"run-").count();

    let (_, all) = env.page(&browser, "/history").await;
    assert_eq!(rows(&all), 3);
    assert!(all.contains("66.7% of 3 finished"));
    let (_, january) = env.page(&browser, "/history?from=2026-01-01&to=2026-01-31").await;
    assert_eq!(rows(&january), 1);
    assert!(january.contains(&format!("id=\"run-{old}\"")));
    let (_, failed) = env.page(&browser, &format!("/history?status=failed&submitter={alice}")).await;
    assert_eq!(rows(&failed), 1);
    assert!(failed.contains("0.0% of 1 finished"));
    let (_, second_only) = env.page(&browser, &format!("/history?experiment={second}&kind=train")).await;
    assert_eq!(rows(&second_only), 1);
    let (_, nobody) = env.page(&browser, "/history?kind=evaluate").await;
    assert_eq!(rows(&nobody), 0);

    let (_, csv) = env.page(&browser, &format!("/history.csv?from=2026-02-01&experiment={first}")).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&format!("{ok},ok,succeeded,train,")), "{csv}");
    let (status, html) = env.page(&browser, "/history?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(html.contains("from: `yesterday` is not a date (YYYY-MM-DD)"));
}

#[tokio::test]
async fn the_queue_shows_positions_by_priority_and_progress_of_running_runs() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("queue").await;
    let low = submit(&env, experiment, "low", 0.001).await;
    let urgent = submit(&env, experiment, "urgent", 0.001).await;
    let running = submit(&env, experiment, "busy", 0.001).await;
    sqlx::query("UPDATE runs SET priority = 5 WHERE id = $1").bind(urgent).execute(&env.pool).await.unwrap();
    sqlx::query(
        "UPDATE runs SET status = 'running', attempt = 1, worker_id = 'w-9', started_at = now(),
                params = jsonb_set(params, '{epochs}', '4') WHERE id = $1",
    )
    .bind(running)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO metrics (run_id, key, step, value) VALUES ($1, 'epoch_seconds', 2, 1.0), ($1, 'train_loss', 150, 0.3)")
        .bind(running)
        .execute(&env.pool)
        .await
        .unwrap();
    let (browser, _) = env.browser().await;
    let (status, html) = env.page(&browser, "/queue").await;
    assert_eq!(status, 200);
    let queued = html.split("<h2>Queued").nth(1).unwrap();
    let urgent_at = queued.find(&format!("#{urgent}</a>")).unwrap();
    let low_at = queued.find(&format!("#{low}</a>")).unwrap();
    assert!(urgent_at < low_at, "higher priority first");
    assert!(queued.contains("<td class=\"num\">1</td><td><a href=\"/runs/"), "positions count from 1");
    assert!(html.contains("epoch 2 of 4, step 150"), "progress of the running run");
}

#[tokio::test]
async fn run_metrics_summaries_follow_every_insert() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("summaries").await;
    let run = submit(&env, experiment, "r", 0.001).await;
    let insert = |points: &'static str| {
        let pool = env.pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(
                format!("INSERT INTO metrics (run_id, key, step, value) VALUES {points} ON CONFLICT DO NOTHING")
                    .replace("$run", &run.to_string()),
            ))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    insert("($run, 'loss', 5, 0.5), ($run, 'loss', 1, 2.0)").await;
    // An older step later does not replace the last value; a repeated point counts once.
    insert("($run, 'loss', 3, 0.1), ($run, 'loss', 5, 9.9)").await;
    let summary: (i64, f64, f64, f64, i64) = sqlx::query_as(
        "SELECT last_step, last_value, min_value, max_value, points FROM run_metrics WHERE run_id = $1 AND key = 'loss'",
    )
    .bind(run)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(summary, (5, 0.5, 0.1, 2.0, 3));
}
