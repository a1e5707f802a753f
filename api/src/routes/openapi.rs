//! `GET /api/v1/openapi.json`: the document of every route, built once.
use crate::openapi::Reply;
use std::sync::OnceLock;

/// Public, like `/healthz`: clients read it before they hold a token.
pub async fn document() -> Reply<serde_json::Value> {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    Reply(DOCUMENT.get_or_init(super::openapi_document).clone())
}
