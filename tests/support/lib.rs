//! End-to-end test support: a fresh, migrated database per test, a Redis key prefix per test,
//! and the real API, scheduler and worker started in-process on port 0. Everything a test
//! creates is removed when its `TestEnv` drops, whether the test passed or not.
#![allow(clippy::unwrap_used)]

pub mod webdriver;

use cairn_domain::settings::Secret;
use serde_json::{Value, json};
use sqlx::{PgPool, postgres::PgPoolOptions};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};
use tokio::{sync::oneshot, task::JoinHandle};

/// The workspace root, from this crate's manifest folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where the real MNIST test split lives: `CAIRN_TEST_DATA_DIR`, else `../shared/data`
/// beside the checkout. Tests that need it fail (never skip) when it is missing.
pub fn shared_data_dir() -> PathBuf {
    let dir = std::env::var("CAIRN_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("../shared/data"));
    assert!(dir.join("mnist").is_dir(), "the MNIST data folder {} is missing", dir.join("mnist").display());
    dir.canonicalize().unwrap()
}

/// In-process workers keep their run logs, as the worker process does. With `CAIRN_TEST_LOG`
/// set (a `tracing` filter such as `info`), the in-process services also log to the test's
/// output.
fn init_test_logging() {
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let output = std::env::var("CAIRN_TEST_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer().with_test_writer().with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    let _ = tracing_subscriber::registry().with(cairn_trainer::run_log::layer()).with(output).try_init();
}

fn admin_url() -> String {
    std::env::var("CAIRN_TEST_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn redis_url() -> String {
    std::env::var("CAIRN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// A process started in-process, stopped when dropped.
pub struct Service {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self { stop: Some(stop), task: Some(tokio::spawn(run(stopped))) }
    }

    /// Asks the service to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The `cairn-trainer` binary beside this test's executable (`target/debug/deps/..`), or
/// `CAIRN_TRAINER_BIN`.
/// A fresh data folder holding dataset `name`, whose header promises 20 images while its file
/// holds 5: the API's header check passes, and the worker's full read fails the run.
pub fn data_dir_with_truncated_dataset(name: &str) -> PathBuf {
    let data_dir = std::env::temp_dir().join(format!("cairn-truncated-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(data_dir.join(name)).unwrap();
    let mut images = 0x0803u32.to_be_bytes().to_vec();
    for dim in [20u32, 28, 28] {
        images.extend(dim.to_be_bytes());
    }
    images.extend(vec![0u8; 5 * 784]);
    let mut labels = 0x0801u32.to_be_bytes().to_vec();
    labels.extend(20u32.to_be_bytes());
    labels.extend([1u8; 20]);
    std::fs::write(data_dir.join(name).join("x-images-idx3-ubyte"), images).unwrap();
    std::fs::write(data_dir.join(name).join("x-labels-idx1-ubyte"), labels).unwrap();
    data_dir
}

/// The production policy with short waits, so tests of lost workers stay quick.
pub fn test_retry_policy() -> cairn_domain::RetryPolicy {
    cairn_domain::RetryPolicy {
        max_attempts: 3,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    }
}

pub fn trainer_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CAIRN_TRAINER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join("cairn-trainer")
}

/// A worker running as its own process, killed when dropped.
pub struct WorkerProcess {
    child: std::process::Child,
    pub log_path: PathBuf,
}

impl WorkerProcess {
    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `kill -TERM`, then waits for the process to exit; returns how long that took.
    pub fn terminate(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let status = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the worker exited with {status}; log:\n{}", self.log());
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "the worker did not exit within {timeout:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TestEnv {
    pub database_url: String,
    database: String,
    pub pool: PgPool,
    pub queue_prefix: String,
    pub artifact_dir: PathBuf,
    pub data_dir: PathBuf,
    pub base_url: String,
    /// Sends the token of `alice`, the admin of team `team-a`.
    pub http: reqwest::Client,
    pub token: String,
    _api: Service,
}

/// The user every test acts as unless it says otherwise.
pub const ADMIN: &str = "alice";
pub const ADMIN_PASSWORD: &str = "alice's password";
pub const TEAM: &str = "team-a";

impl TestEnv {
    /// A fresh database and the API serving it; no scheduler or worker yet.
    pub async fn new() -> Self {
        Self::with_data_dir(shared_data_dir()).await
    }

    pub async fn with_data_dir(data_dir: PathBuf) -> Self {
        Self::build(data_dir, 100_000).await
    }

    /// The API refuses more than `per_minute` requests a minute per token.
    pub async fn with_rate_limit(per_minute: u32) -> Self {
        Self::build(shared_data_dir(), per_minute).await
    }

    async fn build(data_dir: PathBuf, rate_limit_per_minute: u32) -> Self {
        init_test_logging();
        let id = ulid::Ulid::generate().to_string().to_lowercase();
        let database = format!("cairn_test_{id}");
        let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\""))).execute(&admin).await.unwrap();
        admin.close().await;
        let database_url = format!("{}/{database}", admin_url().rsplit_once('/').unwrap().0);
        let pool = PgPoolOptions::new().max_connections(5).connect(&database_url).await.unwrap();
        cairn_api::MIGRATOR.run(&pool).await.unwrap();

        let artifact_dir = std::env::temp_dir().join(format!("cairn-test-artifacts-{id}"));
        let settings = cairn_api::Settings {
            bind: "127.0.0.1:0".to_owned(),
            database_url: Secret::new(database_url.clone()),
            redis_url: Secret::new(redis_url()),
            data_dir: data_dir.clone(),
            max_body_bytes: 1 << 20,
            max_upload_bytes: 16 << 20,
            http_workers: 2,
            artifact_dir: artifact_dir.clone(),
            rate_limit_per_minute,
            session_hours: 1,
        };
        cairn_api::admin::bootstrap(&pool, TEAM, ADMIN).await.unwrap();
        cairn_api::admin::add_user(&pool, TEAM, ADMIN, ADMIN_PASSWORD, "admin").await.unwrap();
        let token = cairn_api::admin::token(&pool, ADMIN, "tests").await.unwrap();
        let app = cairn_api::Application::build(settings).await.unwrap();
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let api = Service::spawn(|stopped| async move {
            tokio::select! {
                result = app.run_until_stopped() => Ok(result?),
                _ = stopped => Ok(()),
            }
        });
        Self {
            database_url,
            database,
            pool,
            queue_prefix: format!("cairn-test-{id}"),
            artifact_dir,
            data_dir,
            base_url,
            http: client_with_token(&token),
            token,
            _api: api,
        }
    }

    pub fn scheduler_settings(&self) -> cairn_scheduler::Settings {
        cairn_scheduler::Settings {
            database_url: Secret::new(self.database_url.clone()),
            redis_url: Secret::new(redis_url()),
            queue_prefix: self.queue_prefix.clone(),
            sweep_interval: Duration::from_millis(500),
            retry: test_retry_policy(),
            reap_grace: Duration::from_secs(5),
            vacuum_interval: Duration::from_millis(500),
        }
    }

    pub async fn start_scheduler(&self) -> Service {
        self.start_scheduler_with(self.scheduler_settings()).await
    }

    pub async fn start_scheduler_with(&self, settings: cairn_scheduler::Settings) -> Service {
        let scheduler = cairn_scheduler::Scheduler::build(settings).await.unwrap();
        Service::spawn(|stopped| {
            scheduler.run_until(async move {
                let _ = stopped.await;
            })
        })
    }

    pub fn worker_settings(&self) -> cairn_trainer::Settings {
        cairn_trainer::Settings {
            database_url: Secret::new(self.database_url.clone()),
            redis_url: Secret::new(redis_url()),
            queue_prefix: self.queue_prefix.clone(),
            queues: vec!["default".to_owned()],
            data_dir: self.data_dir.clone(),
            artifact_dir: self.artifact_dir.clone(),
            worker_id: format!("test-worker-{}", ulid::Ulid::generate()),
            torch_threads: 2,
            poll_interval: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(250),
            // Short, so a killed worker is replaced quickly; long enough for a loaded CI machine.
            lease_duration: Duration::from_secs(4),
            retry: test_retry_policy(),
        }
    }

    pub async fn start_worker(&self) -> Service {
        self.start_worker_with(self.worker_settings()).await
    }

    pub async fn start_worker_with(&self, settings: cairn_trainer::Settings) -> Service {
        let worker = cairn_trainer::Worker::build(settings).await.unwrap();
        Service::spawn(|stopped| {
            worker.run_until(async move {
                let _ = stopped.await;
            })
        })
    }

    /// Starts `cairn-trainer` as a real process with this test's settings; its log goes to
    /// `<artifact dir>/<name>.log`.
    pub fn spawn_worker_process(&self, name: &str) -> WorkerProcess {
        let settings = self.worker_settings();
        std::fs::create_dir_all(&self.artifact_dir).unwrap();
        let log_path = self.artifact_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let binary = trainer_binary();
        let child = std::process::Command::new(&binary)
            .env("CAIRN_DATABASE_URL", settings.database_url.expose())
            .env("CAIRN_REDIS_URL", settings.redis_url.expose())
            .env("CAIRN_QUEUE_PREFIX", &settings.queue_prefix)
            .env("CAIRN_DATA_DIR", &settings.data_dir)
            .env("CAIRN_ARTIFACT_DIR", &settings.artifact_dir)
            .env("CAIRN_WORKER_ID", name)
            .env("CAIRN_TORCH_THREADS", "1")
            .env("CAIRN_POLL_INTERVAL_MS", "50")
            .env("CAIRN_HEARTBEAT_INTERVAL_MS", settings.heartbeat_interval.as_millis().to_string())
            .env("CAIRN_LEASE_SECONDS", settings.lease_duration.as_secs_f64().to_string())
            .env("CAIRN_MAX_ATTEMPTS", settings.retry.max_attempts.to_string())
            .env("CAIRN_RETRY_BACKOFF_MS", settings.retry.first_backoff.as_millis().to_string())
            .env("CAIRN_RETRY_MAX_BACKOFF_MS", settings.retry.max_backoff.as_millis().to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("starting {}: {err} (run `cargo build --workspace --bins` first)", binary.display())
            });
        WorkerProcess { child, log_path }
    }

    /// A user with `role` in `team` (created if needed), and a client sending their token.
    pub async fn user(&self, team: &str, name: &str, role: &str) -> reqwest::Client {
        sqlx::query("INSERT INTO teams (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(team)
            .execute(&self.pool)
            .await
            .unwrap();
        cairn_api::admin::add_user(&self.pool, team, name, "password", role).await.unwrap();
        client_with_token(&cairn_api::admin::token(&self.pool, name, "tests").await.unwrap())
    }

    /// A browser signed in to the dashboard as the admin: a cookie-keeping client, and the
    /// session's CSRF token read from a page.
    pub async fn browser(&self) -> (reqwest::Client, String) {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = client
            .post(self.url("/login"))
            .form(&[("name", ADMIN), ("password", ADMIN_PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303, "sign-in failed");
        let page = client.get(self.url("/tokens")).send().await.unwrap().text().await.unwrap();
        let csrf =
            page.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
        (client, csrf)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A dashboard page as the signed-in admin.
    pub async fn page(&self, browser: &reqwest::Client, path: &str) -> (u16, String) {
        let response = browser.get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response =
            self.http.post(self.url(path)).header("content-type", "application/json").body(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_experiment(&self, name: &str) -> i64 {
        let (status, body) = self.post("/api/v1/experiments", &json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Submits a train run and returns its id.
    pub async fn submit_train(&self, experiment: i64, params: Value) -> i64 {
        let (status, body) = self
            .post(&format!("/api/v1/experiments/{experiment}/runs"), &json!({"kind": "train", "params": params}))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "queued");
        body["id"].as_i64().unwrap()
    }

    /// Polls the run until its status is one of `statuses`, failing with what was seen.
    pub async fn wait_for_status(&self, run_id: i64, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, run) = self.get(&format!("/api/v1/runs/{run_id}")).await;
            if statuses.iter().any(|s| run["status"] == *s) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not reach {statuses:?} within {timeout:?}; last seen: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every stored metric value of a run except timings, by key and step: what two runs with
    /// the same seed must agree on.
    pub async fn metric_values(&self, run_id: i64) -> Vec<(String, i64, f64)> {
        sqlx::query_as(
            "SELECT key, step, value FROM metrics WHERE run_id = $1
             AND key NOT IN ('epoch_seconds', 'samples_per_second') ORDER BY key, step",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Redis keys under this test's queue prefix.
    pub async fn queue_keys(&self) -> Vec<String> {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS").arg(format!("{}:*", self.queue_prefix)).query_async(&mut conn).await.unwrap()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on async work: clean up on
        // a thread with a runtime of its own.
        let database = self.database.clone();
        let prefix = self.queue_prefix.clone();
        let artifacts = self.artifact_dir.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                // FORCE ends the test's own connections too: closing its pool here would wait
                // on the test's runtime, which is blocked on this thread.
                if let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> =
                        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
            let _ = std::fs::remove_dir_all(artifacts);
        });
        let _ = cleanup.join();
    }
}
