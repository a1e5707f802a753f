//! The dashboard in a real browser (headless Chromium): submit a run through the form, watch
//! it succeed without reloading, pick two runs and compare them. Screenshots of every page go
//! to `.cairn/screenshots/` (git-ignored) for a person to look at.
#![allow(clippy::unwrap_used)]

use cairn_tests::{ADMIN, ADMIN_PASSWORD, TestEnv, webdriver::Browser, workspace_root};
use serde_json::json;
use std::time::Duration;

const RUN_NAME: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn a_run_submitted_in_the_browser_goes_live_to_succeeded_and_compares_with_another() {
    let env = TestEnv::new().await;
    let _scheduler = env.start_scheduler().await;
    let _worker = env.start_worker().await;
    let experiment = env.create_experiment("browser").await;
    let other = env
        .submit_train(experiment, json!({"dataset": "synthetic-digits", "train_range": [0, 1024], "validation_range": [8000, 8256], "epochs": 2, "learning_rate": 0.01}))
        .await;
    let shots = workspace_root().join(".cairn/screenshots");
    let browser = Browser::start().await;

    browser.open(&env.url("/login")).await;
    browser.screenshot(&shots.join("login.png")).await;
    browser.fill("input[name=name]", ADMIN).await;
    browser.fill("input[name=password]", ADMIN_PASSWORD).await;
    browser.click(&browser.find("form button[type=submit]").await).await;
    browser.wait_for_url(Duration::from_secs(30), |url| !url.ends_with("/login")).await;

    browser.open(&env.url(&format!("/experiments/{experiment}/new"))).await;
    browser.fill("#name", RUN_NAME).await;
    browser.fill("input[name=train_start]", "0").await;
    browser.fill("input[name=train_end]", "4096").await;
    browser.fill("input[name=validation_start]", "8000").await;
    browser.fill("input[name=validation_end]", "8256").await;
    browser.fill("#epochs", "2").await;
    browser.screenshot(&shots.join("new-run.png")).await;
    browser.click(&browser.find("main form button[type=submit]").await).await;

    let run_url = browser.wait_for_url(Duration::from_secs(30), |url| url.contains("/runs/")).await;
    let heading = browser.text_of("h1").await;
    assert!(heading.contains(RUN_NAME), "the name shows as text, not as a script: {heading}");
    // It waits behind the first run, so the page opens before it ends; from here only the
    // page's own script updates the status: this loop never reloads.
    let first = browser.text_of("#run-status").await;
    assert!(first == "queued" || first == "running", "the page opened on a live run, not a {first} one");
    let status =
        browser.wait_for_text("#run-status", Duration::from_secs(120), |s| s == "succeeded" || s == "failed").await;
    assert_eq!(status, "succeeded");
    assert_eq!(browser.url().await, run_url, "the page was not left or reloaded to a new address");
    assert!(!browser.find_all("pre.log span").await.is_empty(), "the worker's log lines show");
    browser.screenshot(&shots.join("run.png")).await;
    env.wait_for_status(other, &["succeeded"], Duration::from_secs(120)).await;

    browser.open(&env.url(&format!("/experiments/{experiment}"))).await;
    let boxes = browser.find_all("input[name=runs]").await;
    assert_eq!(boxes.len(), 2, "both runs are in the table");
    for checkbox in &boxes {
        browser.click(checkbox).await;
    }
    browser.screenshot(&shots.join("experiment.png")).await;
    browser.click(&browser.find("form[action='/compare'] button[type=submit]").await).await;

    browser.wait_for_url(Duration::from_secs(30), |url| url.contains("/compare?")).await;
    let curves = browser.find_all("figure svg[aria-label='val_loss'] path.series").await;
    assert_eq!(curves.len(), 2, "two curves on the validation-loss chart");
    let legend = browser.text_of("main ul.legend").await;
    assert!(legend.contains(RUN_NAME) && legend.contains(&format!("#{other}")), "{legend}");
    browser.screenshot(&shots.join("compare.png")).await;

    for (page, file) in [("/", "experiments.png"), ("/history", "history.png"), ("/queue", "queue.png")] {
        browser.open(&env.url(page)).await;
        assert!(!browser.find_all("main h1").await.is_empty(), "{page} renders");
        browser.screenshot(&shots.join(file)).await;
    }
    browser.quit().await;
}
