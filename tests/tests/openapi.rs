//! The OpenAPI document: valid OpenAPI 3.1, one operation for every route the server has and
//! none more, every reference resolved, and every request example accepted by the server.
#![allow(clippy::unwrap_used)]

use cairn_tests::TestEnv;
use serde_json::Value;
use std::collections::BTreeSet;

fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_and_lists_every_route_the_server_has() {
    let env = TestEnv::new().await;
    // Public, like /healthz: a client reads it before it holds a token.
    let response = reqwest::get(env.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    assert_eq!(spec.validate_version().unwrap().to_string(), "3.1.0");

    let documented: BTreeSet<(String, String)> =
        spec.operations().map(|(path, method, _)| (method.as_str().to_lowercase(), path)).collect();
    let served: BTreeSet<(String, String)> =
        cairn_api::routes::ROUTES.iter().map(|(method, path)| (method.to_string(), path.to_string())).collect();
    assert_eq!(documented, served, "every route, and only routes the server has");

    let document: Value = serde_json::from_str(&text).unwrap();
    let mut ids = BTreeSet::new();
    for (path, method, operation) in spec.operations() {
        let at = format!("{method} {path}");
        assert!(ids.insert(operation.operation_id.clone().unwrap()), "{at}: operationId is unique");
        assert!(operation.summary.as_deref().is_some_and(|s| !s.is_empty()), "{at}: has a summary");
        let raw = &document["paths"][&path][method.as_str().to_lowercase()];
        let statuses: Vec<u16> = raw["responses"].as_object().unwrap().keys().map(|s| s.parse().unwrap()).collect();
        assert!(statuses.iter().any(|s| (200..300).contains(s)), "{at}: documents its success");
        if raw["security"].as_array().is_some_and(|s| !s.is_empty()) {
            assert!(statuses.contains(&401) && statuses.contains(&403), "{at}: documents its auth errors");
        }
        if path.contains('{') {
            assert!(statuses.contains(&404), "{at}: documents not found");
        }
        for (status, response) in raw["responses"].as_object().unwrap() {
            // Errors carry the error body and an example of it (`/healthz` answers 503 with
            // its own report).
            let content = &response["content"]["application/json"];
            if content["schema"]["$ref"] == "#/components/schemas/ErrorBody" {
                let example = &content["example"];
                assert!(example["error"].is_string() && example["message"].is_string(), "{at} {status}: an example");
            } else {
                assert!(status.starts_with('2') || path == "/healthz", "{at} {status}: an error body");
            }
        }
    }
    // A refusal that depends on what the route changes is named in the route table.
    let conflict = &document["paths"]["/api/v1/runs/{id}"]["patch"]["responses"]["409"];
    assert_eq!(conflict["content"]["application/json"]["example"]["error"], "run_started", "{conflict}");

    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{target}: a schema ref"));
        assert!(document["components"]["schemas"].get(name).is_some(), "{target} resolves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_example_is_accepted_by_its_route() {
    let env = TestEnv::new().await;
    env.user(cairn_tests::TEAM, "ada", "viewer").await;
    let experiment = env.create_experiment("examples").await;
    let run = env.submit_train(experiment, serde_json::json!({"dataset": "synthetic-digits", "epochs": 1})).await;
    let team: i64 = sqlx::query_scalar("SELECT id FROM teams WHERE name = $1")
        .bind(cairn_tests::TEAM)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let (_, document) = env.get("/api/v1/openapi.json").await;
    let schemas = &document["components"]["schemas"];
    let mut tried = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) = operation["requestBody"]["content"]["application/json"]["schema"].as_object() else {
                continue;
            };
            let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
            let example = schemas[name]["examples"][0].clone();
            assert!(example.is_object(), "{method} {path}: its body {name} has an example");
            let id = if path.starts_with("/api/v1/experiments/") {
                experiment
            } else if path.starts_with("/api/v1/runs/") {
                run
            } else {
                team
            };
            let url = env.url(&path.replace("{id}", &id.to_string()));
            let request = match method.as_str() {
                "post" => env.http.post(url),
                "put" => env.http.put(url),
                "patch" => env.http.patch(url),
                other => panic!("{other} with a body"),
            };
            let response = request.json(&example).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!((200..300).contains(&status), "{method} {path} with its example {example}: {status} {body}");
            assert!(
                operation["responses"].get(status.to_string()).is_some(),
                "{method} {path}: {status} is documented"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 7, "every JSON body: experiments, runs, sweeps, run change, metrics, members, tokens");
}
