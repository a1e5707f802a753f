//! Access control over HTTP: every route the server has, called without credentials, from
//! another team, and with a role too weak for it.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::{Value, json};

/// A team-a experiment with one run and one artifact, for the routes to point at.
struct Fixture {
    experiment: i64,
    run: i64,
    sweep: i64,
    artifact: i64,
    team: i64,
    token: i64,
}

async fn fixture(env: &TestEnv) -> Fixture {
    let experiment = env.create_experiment("guarded").await;
    let run = env.submit_train(experiment, json!({"dataset": "synthetic-digits"})).await;
    std::fs::create_dir_all(env.artifact_dir.join("runs")).unwrap();
    std::fs::write(env.artifact_dir.join("runs/model.bin"), b"weights").unwrap();
    let sha = "9c1b7b7e1d5ee4e7a1f2d0b2d8c9a4f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3";
    let artifact: i64 = sqlx::query_scalar(
        "INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES ($1, 'checkpoint', 'runs/model.bin', 7, $2) RETURNING id",
    )
    .bind(run)
    .bind(sha)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let team: i64 =
        sqlx::query_scalar("SELECT id FROM teams WHERE name = 'team-a'").fetch_one(&env.pool).await.unwrap();
    let token: i64 = sqlx::query_scalar("SELECT min(id) FROM api_tokens").fetch_one(&env.pool).await.unwrap();
    let sweep: i64 = sqlx::query_scalar(
        "INSERT INTO sweeps (experiment_id, spec, max_parallel, metric, direction) VALUES ($1, '{}', 1, 'val_accuracy', 'max')
         RETURNING id",
    )
    .bind(experiment)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    Fixture { experiment, run, sweep, artifact, team, token }
}

/// The concrete path and a well-formed body of each route, pointing at team-a's resources.
/// A route missing here fails the test.
fn call(route: &str, f: &Fixture) -> Option<(String, Value)> {
    let (e, r, a, t, k, s) = (f.experiment, f.run, f.artifact, f.team, f.token, f.sweep);
    Some(match route {
        "/healthz" => ("/healthz".to_owned(), json!(null)),
        "/api/v1/experiments" => ("/api/v1/experiments".to_owned(), json!({"name": "intruder", "team_id": t})),
        "/api/v1/experiments/{id}" => (format!("/api/v1/experiments/{e}"), json!(null)),
        "/api/v1/experiments/{id}/runs" => (
            format!("/api/v1/experiments/{e}/runs"),
            json!({"kind": "train", "params": {"dataset": "synthetic-digits"}}),
        ),
        "/api/v1/experiments/{id}/uploads" => (format!("/api/v1/experiments/{e}/uploads"), json!({})),
        "/api/v1/experiments/{id}/sweeps" => (
            format!("/api/v1/experiments/{e}/sweeps"),
            json!({"template": {"kind": "train", "params": {"dataset": "synthetic-digits"}}, "strategy": "grid",
                   "metric": "val_accuracy", "direction": "max", "space": {"epochs": {"type": "choice", "values": [1, 2]}}}),
        ),
        "/api/v1/sweeps/{id}" => (format!("/api/v1/sweeps/{s}"), json!(null)),
        "/api/v1/sweeps/{id}/cancel" => (format!("/api/v1/sweeps/{s}/cancel"), json!({})),
        "/api/v1/runs" => ("/api/v1/runs".to_owned(), json!(null)),
        // GET ignores the body; PATCH changes the priority.
        "/api/v1/runs/{id}" => (format!("/api/v1/runs/{r}"), json!({"priority": 1})),
        "/api/v1/queues" => ("/api/v1/queues".to_owned(), json!(null)),
        "/api/v1/runs/{id}/cancel" => (format!("/api/v1/runs/{r}/cancel"), json!({})),
        "/api/v1/runs/{id}/metrics" => {
            (format!("/api/v1/runs/{r}/metrics"), json!({"points": [{"key": "x", "step": 0, "value": 1.0}]}))
        }
        "/api/v1/runs/{id}/artifacts/{artifact_id}" => (format!("/api/v1/runs/{r}/artifacts/{a}"), json!(null)),
        "/api/v1/teams" => ("/api/v1/teams".to_owned(), json!(null)),
        "/api/v1/teams/{id}/members" => {
            (format!("/api/v1/teams/{t}/members"), json!({"user": "alice", "role": "viewer"}))
        }
        "/api/v1/teams/{id}/audit" => (format!("/api/v1/teams/{t}/audit"), json!(null)),
        "/api/v1/tokens" => ("/api/v1/tokens".to_owned(), json!({"name": "mine"})),
        "/api/v1/tokens/{id}/revoke" => (format!("/api/v1/tokens/{k}/revoke"), json!({})),
        "/api/v1/openapi.json" => ("/api/v1/openapi.json".to_owned(), json!(null)),
        _ => return None,
    })
}

async fn send(client: &reqwest::Client, env: &TestEnv, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = env.url(path);
    let request = match method {
        "get" => client.get(url),
        "post" => client.post(url).json(body),
        "put" => client.put(url).json(body),
        "patch" => client.patch(url).json(body),
        other => panic!("a route with method {other}: add it to this test"),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Routes about the caller (lists of what they may see, their tokens) rather than a team's
/// resource.
fn personal(method: &str, route: &str) -> bool {
    let list =
        method == "get" && ["/api/v1/experiments", "/api/v1/runs", "/api/v1/teams", "/api/v1/queues"].contains(&route);
    list || route == "/api/v1/tokens"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_guarded_against_strangers_outsiders_and_weak_roles() {
    let env = TestEnv::new().await;
    let f = fixture(&env).await;
    let anonymous = reqwest::Client::new();
    let outsider = env.user("team-b", "mallory", "admin").await;
    let viewer = env.user("team-a", "victor", "viewer").await;

    for &(method, route) in cairn_api::routes::ROUTES {
        let (path, body) = call(route, &f).unwrap_or_else(|| panic!("{method} {route} is not covered by this test"));
        let writes = method != "get";
        let before = counts(&env).await;

        let (status, got) = send(&anonymous, &env, method, &path, &body).await;
        // What a client reads before it holds a token; neither tells anything of a team.
        if route == "/healthz" || route == "/api/v1/openapi.json" {
            assert_eq!(status, 200, "{method} {route} is public");
            continue;
        }
        assert_eq!(
            (status, got["error"].as_str()),
            (401, Some("unauthorized")),
            "{method} {route} without a token: {got}"
        );

        let (status, got) = send(&outsider, &env, method, &path, &body).await;
        if personal(method, route) {
            assert!(status < 400, "{method} {route} for another team's user: {status} {got}");
            assert!(!got.to_string().contains("guarded"), "{method} {route} leaks team-a's experiment: {got}");
        } else {
            assert_eq!(
                (status, got["error"].as_str()),
                (404, Some("not_found")),
                "{method} {route} from another team: {got}"
            );
        }

        if writes && !personal(method, route) {
            // A token belongs to its user alone: to anyone else, even in the team, it does not exist.
            let expected = if route == "/api/v1/tokens/{id}/revoke" { (404, "not_found") } else { (403, "forbidden") };
            let (status, got) = send(&viewer, &env, method, &path, &body).await;
            assert_eq!(
                (status, got["error"].as_str()),
                (expected.0, Some(expected.1)),
                "{method} {route} as a viewer: {got}"
            );
        }
        if !personal(method, route) {
            assert_eq!(counts(&env).await, before, "{method} {route} changed something it was refused");
        }
    }
}

async fn counts(env: &TestEnv) -> [i64; 8] {
    [
        env.count("sweeps").await,
        env.count("sweeps WHERE status = 'cancelled'").await,
        env.count("uploads").await,
        env.count("experiments").await,
        env.count("runs").await,
        env.count("metrics").await,
        env.count("memberships").await,
        env.count("runs WHERE status = 'cancelled'").await,
    ]
}

#[tokio::test]
async fn every_dashboard_page_needs_a_session_and_every_form_its_csrf_token() {
    let env = TestEnv::new().await;
    let f = fixture(&env).await;
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (browser, _csrf) = env.browser().await;
    for &(method, route) in cairn_api::dashboard::PAGES {
        let path = route
            .replace("/experiments/{id}", &format!("/experiments/{}", f.experiment))
            .replace("/runs/{id}", &format!("/runs/{}", f.run))
            .replace("/sweeps/{id}", &format!("/sweeps/{}", f.sweep))
            .replace("{artifact_id}", &f.artifact.to_string())
            .replace("/tokens/{id}", &format!("/tokens/{}", f.token))
            .replace("/teams/{id}", &format!("/teams/{}", f.team));
        assert!(!path.contains('{'), "{route}: substitute its parameters in this test");
        if route == "/login" {
            continue;
        }
        let response = match method {
            "get" => anonymous.get(env.url(&path)).send().await.unwrap(),
            _ => anonymous.post(env.url(&path)).form(&[("name", "x")]).send().await.unwrap(),
        };
        assert_eq!(response.status().as_u16(), 303, "{method} {route} without a session");
        assert_eq!(response.headers()["location"], "/login");
        if method == "post" {
            let response = browser.post(env.url(&path)).form(&[("name", "x")]).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 403, "{method} {route} without its CSRF token");
        }
    }
    let response = anonymous.get(env.url("/login")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax_and_sign_out_ends_it() {
    let env = TestEnv::new().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response =
        client.post(env.url("/login")).form(&[("name", "alice"), ("password", "wrong")]).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .post(env.url("/login"))
        .form(&[("name", cairn_tests::ADMIN), ("password", cairn_tests::ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.starts_with("cairn_session="),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");

    let (browser, csrf) = env.browser().await;
    assert_eq!(env.page(&browser, "/").await.0, 200);
    let response = browser.post(env.url("/logout")).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(env.page(&browser, "/").await.0, 303, "signed out");
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once_and_tokens_are_stored_hashed() {
    let env = TestEnv::new().await;
    let (status, created) = env.post("/api/v1/tokens", &json!({"name": "script"})).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let script = cairn_tests::client_with_token(&token);
    assert_eq!(script.get(env.url("/api/v1/experiments")).send().await.unwrap().status().as_u16(), 200);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_hash = $1")
        .bind(&token)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the token itself is never stored");
    let (_, listed) = env.get("/api/v1/tokens").await;
    assert!(!listed.to_string().contains(&token), "a token is shown only once");
    assert!(listed["tokens"][1]["last_used_at"].is_string(), "{listed}");

    let id = created["id"].as_i64().unwrap();
    let (status, _) = env.post(&format!("/api/v1/tokens/{id}/revoke"), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(script.get(env.url("/api/v1/experiments")).send().await.unwrap().status().as_u16(), 401);
}

#[tokio::test]
async fn too_many_requests_are_refused_with_retry_after() {
    let env = TestEnv::with_rate_limit(5).await;
    for _ in 0..5 {
        assert_eq!(env.get("/api/v1/experiments").await.0, 200);
    }
    let response = env.http.get(env.url("/api/v1/experiments")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_for_team_admins_only() {
    let env = TestEnv::new().await;
    let f = fixture(&env).await;
    let (status, _) = env.post(&format!("/api/v1/runs/{}/cancel", f.run), &json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = env.post("/api/v1/tokens", &json!({"name": "ci"})).await;
    assert_eq!(status, 201, "{body}");

    let (status, log) = env.get(&format!("/api/v1/teams/{}/audit", f.team)).await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["user"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, vec![("run.cancel", "alice"), ("run.create", "alice"), ("experiment.create", "alice")]);
    let token_entries: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'token.create'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(token_entries, 2, "the tests' own token and the one created here");

    let viewer = env.user("team-a", "victor", "viewer").await;
    let response = viewer.get(env.url(&format!("/api/v1/teams/{}/audit", f.team))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test]
async fn artifacts_are_served_after_the_checks_and_only_from_inside_the_artifact_folder() {
    let env = TestEnv::new().await;
    let f = fixture(&env).await;
    let response =
        env.http.get(env.url(&format!("/api/v1/runs/{}/artifacts/{}", f.run, f.artifact))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"weights");

    // A path that climbs out cannot even be recorded...
    let climbing = sqlx::query(
        "INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES ($1, 'x', '../../etc/passwd', 1, $2)",
    )
    .bind(f.run)
    .bind("0".repeat(64))
    .execute(&env.pool)
    .await;
    assert!(climbing.is_err());
    // ...and a link inside the folder that points outside it is not followed.
    std::os::unix::fs::symlink("/etc/passwd", env.artifact_dir.join("runs/escape")).unwrap();
    let link: i64 = sqlx::query_scalar(
        "INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES ($1, 'x', 'runs/escape', 1, $2) RETURNING id",
    )
    .bind(f.run)
    .bind("0".repeat(64))
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let (status, _) = env.get(&format!("/api/v1/runs/{}/artifacts/{link}", f.run)).await;
    assert_eq!(status, 404);
    let (status, _) = env.get(&format!("/api/v1/runs/{}/artifacts/{}", f.run, f.artifact + 100)).await;
    assert_eq!(status, 404);
}
