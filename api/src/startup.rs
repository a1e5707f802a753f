//! Building the application: pools, routes and the HTTP server. Tests start the real thing
//! on port 0 through `Application::build`.
use crate::{auth::rate_limit::RateLimiter, dashboard, error::ApiError, routes, settings::Settings};
use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context;
use cairn_datasets::DataDir;
use sqlx::{PgPool, postgres::PgPoolOptions};
use std::{net::TcpListener, time::Duration};

/// What every handler can reach.
pub struct AppState {
    pub settings: Settings,
    pub pool: PgPool,
    pub redis: redis::aio::ConnectionManager,
    pub data_dir: DataDir,
    pub rate_limiter: RateLimiter,
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A request waits at most this long for Postgres, then answers 503.
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(settings.database_url.expose())
            .context("parsing CAIRN_DATABASE_URL")?;
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let redis = redis::Client::open(settings.redis_url.expose())
            .context("parsing CAIRN_REDIS_URL")?
            .get_connection_manager_with_config(redis_config)
            .await
            .context("connecting to Redis")?;
        let listener = TcpListener::bind(&settings.bind).with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let http_workers = settings.http_workers;
        let state = web::Data::new(AppState {
            data_dir: DataDir::new(&settings.data_dir),
            rate_limiter: RateLimiter::new(settings.rate_limit_per_minute),
            settings,
            pool,
            redis,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into()))
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::BadRequest { code: "invalid_query", message: err.to_string(), field: None }.into()
                }))
                .app_data(web::FormConfig::default().limit(64 << 10))
                .wrap(actix_web::middleware::from_fn(crate::idempotency::middleware))
                .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("cairn_api::http"))
                .configure(routes::configure)
                .configure(dashboard::configure)
                .route("/static/live.js", web::get().to(dashboard::live_script))
                .default_service(web::to(|| async { Err::<actix_web::HttpResponse, _>(ApiError::NotFound("page")) }))
        })
        .workers(http_workers)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then drains the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Applies the migrations in `migrations/`.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await.context("connecting to Postgres")?;
    crate::MIGRATOR.run(&pool).await.context("applying migrations")?;
    pool.close().await;
    Ok(())
}
