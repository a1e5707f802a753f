//! The server-rendered dashboard: askama templates in `templates/`, readable without
//! JavaScript.
pub mod chart;
mod forms;
mod pages;
mod view;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(pages::experiments_page)
        .service(pages::create_experiment_form)
        .service(pages::experiment_page)
        .service(pages::new_run_page)
        .service(pages::submit_run_form)
        .service(pages::run_page)
        .service(pages::cancel_run_form);
}
