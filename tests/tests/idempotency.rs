//! `Idempotency-Key`: a REST client that retries a POST (a timeout, a lost answer) gets the
//! first response again and creates nothing twice.
#![allow(clippy::unwrap_used)]

use cairn_tests::{TEAM, TestEnv, client_with_token};
use serde_json::{Value, json};

async fn post(
    env: &TestEnv,
    client: &reqwest::Client,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let response = client.post(env.url(path)).header("idempotency-key", key).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_repeated_post_with_the_same_key_creates_one_run_and_answers_the_same() {
    let env = TestEnv::new().await;
    let experiment = env.create_experiment("retries").await;
    let path = format!("/api/v1/experiments/{experiment}/runs");
    let run = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 64], "validation_range": [64, 96]}});
    let client = client_with_token(&env.token);

    let (status, replayed, first) = post(&env, &client, &path, "sweep-7-trial-1", &run).await;
    assert_eq!((status, replayed), (201, None), "{first}");
    let (status, replayed, again) = post(&env, &client, &path, "sweep-7-trial-1", &run).await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(again, first, "the first response, byte for byte");
    assert_eq!(env.count("runs").await, 1);

    let other_body = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "epochs": 3}});
    let (status, _, error) = post(&env, &client, &path, "sweep-7-trial-1", &other_body).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "Idempotency-Key");
    assert_eq!(env.count("runs").await, 1, "nothing was created");

    let (status, _, second) = post(&env, &client, &path, "sweep-7-trial-2", &run).await;
    assert_eq!(status, 201);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(env.count("runs").await, 2);

    // Keys belong to a token: another client's key of the same name is its own.
    let _ = env.user(TEAM, "bob", "member").await;
    let bob = client_with_token(&cairn_api::admin::token(&env.pool, "bob", "retries").await.unwrap());
    let (status, replayed, _) = post(&env, &bob, &path, "sweep-7-trial-1", &run).await;
    assert_eq!((status, replayed), (201, None));
    assert_eq!(env.count("runs").await, 3);

    // A refused request is answered the same way again, and still creates nothing.
    let bad = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "epochs": 0}});
    let (status, _, refused) = post(&env, &client, &path, "bad-1", &bad).await;
    assert_eq!(status, 422);
    let (status, replayed, again) = post(&env, &client, &path, "bad-1", &bad).await;
    assert_eq!((status, replayed.as_deref(), &again), (422, Some("true"), &refused));

    // Every POST takes a key, not only run submissions.
    let experiment_body = json!({"name": "made once"});
    let (status, _, made) = post(&env, &client, "/api/v1/experiments", "exp-1", &experiment_body).await;
    assert_eq!(status, 201);
    let (status, _, again) = post(&env, &client, "/api/v1/experiments", "exp-1", &experiment_body).await;
    assert_eq!((status, &again), (201, &made), "not a 409 for a name taken by the first attempt");

    let (status, _, error) = post(&env, &client, &path, "", &run).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("Idempotency-Key")));
    let (status, _, _) = post(&env, &client, &path, &"k".repeat(256), &run).await;
    assert_eq!(status, 400);
    assert_eq!(env.count("runs").await, 3);
}
