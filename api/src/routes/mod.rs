//! The REST API under `/api/v1`, and `/healthz`.
mod access;
mod experiments;
mod health;
mod metrics;
mod openapi;
mod queues;
mod runs;
mod sweeps;
mod uploads;

pub use access::{TokenInfo, issue_token, revoke, user_tokens};
pub use experiments::{NewExperiment, create_experiment};
pub use metrics::MAX_KEY_CHARS;
pub use runs::{artifact_download, cancel_run, read_artifact};

/// `route_table!`, and the OpenAPI document of the routes, each described by its handler's
/// argument and return types. A route that refuses a request because of the
/// state of what it changes names that conflict (409, its code and when).
macro_rules! api_routes {
    ($(#[$doc:meta])* $table:ident {
        $($method:ident $path:literal => $handler:path, $summary:literal $(, 409 $code:literal $why:literal)?;)*
    }) => {
        route_table! { $(#[$doc])* $table { $($method $path => $handler;)* } }

        /// The OpenAPI document of every route in the table.
        pub fn openapi_document() -> serde_json::Value {
            let mut document = crate::openapi::Document::default();
            $(document.route(
                crate::openapi::Route { method: stringify!($method), path: $path, name: stringify!($handler), summary: $summary },
                None $(.or(Some(($code, $why))))?,
                &$handler,
            );)*
            document.finish()
        }
    };
}

api_routes! {
    /// Every REST route.
    ROUTES {
        get "/healthz" => health::healthz, "Whether Postgres and Redis answer";
        post "/api/v1/experiments" => experiments::create, "Create an experiment in one of your teams",
            409 "name_taken" "an experiment of that name exists in the team";
        get "/api/v1/experiments" => experiments::list, "Your teams' experiments";
        get "/api/v1/experiments/{id}" => experiments::get, "One experiment";
        post "/api/v1/experiments/{id}/runs" => runs::submit, "Submit a run, or a pipeline of runs (a tree of children)";
        post "/api/v1/experiments/{id}/uploads" => uploads::create, "Upload an IDX file of images for predict runs (raw or gzipped body)";
        post "/api/v1/experiments/{id}/sweeps" => sweeps::create, "Start a hyper-parameter sweep";
        get "/api/v1/sweeps/{id}" => sweeps::get, "A sweep's trials, counts and best trial";
        post "/api/v1/sweeps/{id}/cancel" => sweeps::cancel, "Cancel a sweep: its queued and waiting trials, and stop its running ones",
            409 "sweep_finished" "the sweep already finished or was cancelled";
        get "/api/v1/runs" => runs::list, "Runs of your teams, newest first, a page at a time";
        get "/api/v1/runs/{id}" => runs::get, "One run with its artifacts and attempts";
        patch "/api/v1/runs/{id}" => runs::change, "Change a queued or waiting run's priority",
            409 "run_started" "the run has started: only a run that has not can change its priority";
        post "/api/v1/runs/{id}/cancel" => runs::cancel, "Cancel a run: at once if queued (200), at its next step if running (202)",
            409 "run_finished" "the run already finished";
        get "/api/v1/runs/{id}/metrics" => metrics::get, "A run's metric points, by key";
        post "/api/v1/runs/{id}/metrics" => metrics::ingest, "Log metric points to a run";
        get "/api/v1/runs/{id}/artifacts/{artifact_id}" => runs::download_artifact, "Download one of a run's files";
        get "/api/v1/queues" => queues::list, "Each queue's queued runs in order, running runs and workers";
        get "/api/v1/teams" => access::teams, "Your teams and your role in each";
        put "/api/v1/teams/{id}/members" => access::set_member, "Give a user a role in a team (team admins)";
        get "/api/v1/teams/{id}/audit" => access::audit_log, "A team's audit log (team admins)";
        post "/api/v1/tokens" => access::create_token, "Create an API token for yourself; its secret is shown once";
        get "/api/v1/tokens" => access::list_tokens, "Your API tokens, without secrets";
        post "/api/v1/tokens/{id}/revoke" => access::revoke_token, "Revoke one of your tokens";
        get "/api/v1/openapi.json" => openapi::document, "This document";
    }
}
