//! The REST API under `/api/v1`, and `/healthz`.
mod access;
mod experiments;
mod health;
mod metrics;
mod queues;
mod runs;
mod sweeps;
mod uploads;

pub use access::{TokenInfo, issue_token, revoke, user_tokens};
pub use experiments::{NewExperiment, create_experiment};
pub use metrics::MAX_KEY_CHARS;
pub use runs::{artifact_download, cancel_run, read_artifact};

route_table! {
    /// Every REST route.
    ROUTES {
        get "/healthz" => health::healthz;
        post "/api/v1/experiments" => experiments::create;
        get "/api/v1/experiments" => experiments::list;
        get "/api/v1/experiments/{id}" => experiments::get;
        post "/api/v1/experiments/{id}/runs" => runs::submit;
        post "/api/v1/experiments/{id}/uploads" => uploads::create;
        post "/api/v1/experiments/{id}/sweeps" => sweeps::create;
        get "/api/v1/sweeps/{id}" => sweeps::get;
        post "/api/v1/sweeps/{id}/cancel" => sweeps::cancel;
        get "/api/v1/runs" => runs::list;
        get "/api/v1/runs/{id}" => runs::get;
        patch "/api/v1/runs/{id}" => runs::change;
        post "/api/v1/runs/{id}/cancel" => runs::cancel;
        get "/api/v1/runs/{id}/metrics" => metrics::get;
        post "/api/v1/runs/{id}/metrics" => metrics::ingest;
        get "/api/v1/runs/{id}/artifacts/{artifact_id}" => runs::download_artifact;
        get "/api/v1/queues" => queues::list;
        get "/api/v1/teams" => access::teams;
        put "/api/v1/teams/{id}/members" => access::set_member;
        get "/api/v1/teams/{id}/audit" => access::audit_log;
        post "/api/v1/tokens" => access::create_token;
        get "/api/v1/tokens" => access::list_tokens;
        post "/api/v1/tokens/{id}/revoke" => access::revoke_token;
    }
}
