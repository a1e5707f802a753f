//! The API process: the REST API under `/api/v1` and the server-rendered dashboard.
//! Architecture invariant: this is the only crate that speaks HTTP and renders templates.

/// Declares a list of routes once: the same list registers the handlers (`configure`) and is
/// published as a constant of `(method, path pattern)`, which the access tests walk, so a
/// route added later is tested the moment it exists.
macro_rules! route_table {
    ($(#[$doc:meta])* $table:ident { $($method:ident $path:literal => $handler:path;)* }) => {
        $(#[$doc])*
        pub const $table: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
            $(cfg.route($path, actix_web::web::$method().to($handler));)*
        }
    };
}

pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod filter;
pub mod idempotency;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod submit;

pub use settings::Settings;
pub use startup::{Application, migrate};

/// The schema, embedded from `migrations/` at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
