//! The server-rendered dashboard: askama templates in `templates/`, readable without
//! JavaScript. Every page but the login form needs a session; every form that changes
//! something carries the session's CSRF token.
pub mod chart;
mod compare;
mod downsample;
mod forms;
mod history;
mod login;
mod pages;
mod queue;
mod sweep;
mod table;
mod tradeoff;
mod view;

route_table! {
    /// Every dashboard route.
    PAGES {
        get "/login" => login::form;
        post "/login" => login::sign_in;
        post "/logout" => login::sign_out;
        get "/" => pages::experiments_page;
        post "/experiments" => pages::create_experiment_form;
        get "/experiments/{id}" => pages::experiment_page;
        get "/experiments/{id}/new" => pages::new_run_page;
        post "/experiments/{id}/new" => pages::submit_run_form;
        get "/runs/{id}" => pages::run_page;
        get "/runs/{id}/metrics.csv" => pages::metrics_csv;
        get "/compare" => compare::compare_page;
        get "/history" => history::history_page;
        get "/history.csv" => history::history_csv;
        get "/queue" => queue::queue_page;
        get "/sweeps/{id}" => sweep::sweep_page;
        post "/runs/{id}/cancel" => pages::cancel_run_form;
        get "/runs/{id}/artifacts/{artifact_id}" => pages::download_artifact;
        get "/tokens" => login::tokens_page;
        post "/tokens" => login::create_token_form;
        post "/tokens/{id}/revoke" => login::revoke_token_form;
        get "/teams/{id}/audit" => login::audit_page;
    }
}

/// The dashboard's one script, which keeps live parts of a page up to date. Served without a
/// session: it holds nothing private.
pub async fn live_script() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(include_str!("../../static/live.js"))
}
