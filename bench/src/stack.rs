//! One benchmark's own Cairn: a database made for it (removed afterwards), its own Redis key
//! prefix and artifact folder, and the release binaries started as processes on loopback.
use anyhow::{Context, bail};
use sqlx::{PgPool, postgres::PgPoolOptions};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench password";
const TEAM: &str = "bench";

pub struct Stack {
    pub pool: PgPool,
    pub base_url: String,
    /// Sends the bench user's API token.
    http: reqwest::Client,
    database: String,
    database_url: String,
    admin_url: String,
    queue_prefix: String,
    artifact_dir: PathBuf,
    bin_dir: PathBuf,
    processes: Vec<(String, Child)>,
}

impl Stack {
    /// A migrated database named after `name` with an admin user, and nothing running yet.
    pub async fn new(name: &str) -> anyhow::Result<Self> {
        let server =
            std::env::var("CAIRN_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/cairn".into());
        let server = server.rsplit_once('/').map_or(server.as_str(), |(server, _)| server).to_owned();
        let id = ulid::Ulid::generate().to_string().to_lowercase();
        let database = format!("cairn_bench_{name}_{id}");
        let admin_url = format!("{server}/postgres");
        let admin =
            PgPoolOptions::new().max_connections(1).connect(&admin_url).await.context("connecting to Postgres")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\""))).execute(&admin).await?;
        admin.close().await;
        let database_url = format!("{server}/{database}");
        let pool = PgPoolOptions::new().max_connections(8).connect(&database_url).await?;
        cairn_api::MIGRATOR.run(&pool).await?;
        cairn_api::admin::bootstrap(&pool, TEAM, USER).await?;
        cairn_api::admin::add_user(&pool, TEAM, USER, PASSWORD, "admin").await?;
        let token = cairn_api::admin::token(&pool, USER, "bench").await?;
        let artifact_dir = std::env::temp_dir().join(format!("cairn-bench-{id}"));
        std::fs::create_dir_all(&artifact_dir)?;
        let bin_dir = std::env::current_exe()?.parent().context("the bench binary has no folder")?.to_owned();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        Ok(Self {
            pool,
            base_url: String::new(),
            http: reqwest::Client::builder().default_headers(headers).build()?,
            database,
            database_url,
            admin_url,
            queue_prefix: format!("cairn-bench-{id}"),
            artifact_dir,
            bin_dir,
            processes: Vec::new(),
        })
    }

    fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(binary));
        command
            .env("CAIRN_DATABASE_URL", &self.database_url)
            .env("CAIRN_QUEUE_PREFIX", &self.queue_prefix)
            .env("CAIRN_ARTIFACT_DIR", &self.artifact_dir)
            .env("CAIRN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }

    fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<u32> {
        let child = command.spawn().with_context(|| format!("starting {name} from {}", self.bin_dir.display()))?;
        let pid = child.id();
        self.processes.push((name.to_owned(), child));
        Ok(pid)
    }

    /// Starts `cairn-api` on a free loopback port and waits until it answers; returns its pid.
    pub async fn start_api(&mut self) -> anyhow::Result<u32> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = self.command("cairn-api");
        // The load benchmark sends far more than one person would through one token.
        command.env("CAIRN_BIND", format!("127.0.0.1:{port}")).env("CAIRN_RATE_LIMIT_PER_MINUTE", "100000000");
        let pid = self.spawn("cairn-api", command)?;
        self.base_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            if Instant::now() > deadline {
                bail!("cairn-api did not answer /healthz");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(pid)
    }

    pub fn start_scheduler(&mut self) -> anyhow::Result<u32> {
        let command = self.command("cairn-scheduler");
        self.spawn("cairn-scheduler", command)
    }

    /// A worker with `threads` torch threads; returns its pid.
    pub fn start_trainer(&mut self, threads: usize) -> anyhow::Result<u32> {
        let mut command = self.command("cairn-trainer");
        command
            .env("CAIRN_TORCH_THREADS", threads.to_string())
            .env("CAIRN_WORKER_ID", format!("bench-{}", self.processes.len()));
        self.spawn("cairn-trainer", command)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A client that sends the bench user's API token (clones share one connection pool).
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Creates an experiment through the API and returns its id.
    pub async fn create_experiment(&self, name: &str) -> anyhow::Result<i64> {
        let response: serde_json::Value = self
            .http
            .post(self.url("/api/v1/experiments"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?
            .json()
            .await?;
        response["id"].as_i64().with_context(|| format!("creating the experiment: {response}"))
    }

    /// Submits a run (or pipeline) through the API and returns the root run's id.
    pub async fn submit(&self, experiment: i64, body: &serde_json::Value) -> anyhow::Result<i64> {
        let url = self.url(&format!("/api/v1/experiments/{experiment}/runs"));
        let run: serde_json::Value = self.http.post(url).json(body).send().await?.json().await?;
        run["id"].as_i64().with_context(|| format!("submitting: {run}"))
    }

    /// A cookie-keeping client signed in to the dashboard.
    pub async fn session(&self) -> anyhow::Result<reqwest::Client> {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
        let response = client.post(self.url("/login")).form(&[("name", USER), ("password", PASSWORD)]).send().await?;
        if response.status().as_u16() != 303 {
            bail!("signing in answered {}", response.status());
        }
        Ok(client)
    }

    /// Stops the processes and removes the database, the Redis keys and the artifacts.
    pub async fn close(mut self) -> anyhow::Result<()> {
        for (_, child) in &mut self.processes {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        for (_, child) in &mut self.processes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.pool.close().await;
        let admin = PgPoolOptions::new().max_connections(1).connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database)))
            .execute(&admin)
            .await?;
        let redis_url = std::env::var("CAIRN_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut redis = redis::Client::open(redis_url)?.get_multiplexed_async_connection().await?;
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.queue_prefix)).query_async(&mut redis).await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
        }
        remove_dir(&self.artifact_dir);
        Ok(())
    }
}

fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// The most resident memory a process has had, from `/proc` (Linux), in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}
