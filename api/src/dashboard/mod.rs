//! The server-rendered dashboard: askama templates in `templates/`, readable without
//! JavaScript. Every page but the login form needs a session; every form that changes
//! something carries the session's CSRF token.
pub mod chart;
mod forms;
mod login;
mod pages;
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
        post "/runs/{id}/cancel" => pages::cancel_run_form;
        get "/runs/{id}/artifacts/{artifact_id}" => pages::download_artifact;
        get "/tokens" => login::tokens_page;
        post "/tokens" => login::create_token_form;
        post "/tokens/{id}/revoke" => login::revoke_token_form;
        get "/teams/{id}/audit" => login::audit_page;
    }
}
