//! The REST API under `/api/v1`, and `/healthz`.
mod experiments;
mod health;
mod metrics;
mod runs;

use actix_web::web;

pub use experiments::{NewExperiment, create_experiment};
pub use runs::cancel_run;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz).service(
        web::scope("/api/v1")
            .service(experiments::create)
            .service(experiments::list)
            .service(experiments::get)
            .service(runs::submit)
            .service(runs::list)
            .service(runs::get)
            .service(runs::cancel)
            .service(metrics::get)
            .service(metrics::ingest),
    );
}
