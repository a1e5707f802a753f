//! The API process: the REST API under `/api/v1` and the server-rendered dashboard.
//! Architecture invariant: this is the only crate that speaks HTTP and renders templates.

pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod submit;

pub use settings::Settings;
pub use startup::{Application, migrate};

/// The schema, embedded from `migrations/` at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
