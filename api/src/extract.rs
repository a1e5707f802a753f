//! Request extractors whose failures are `ApiError`s naming the offending field.
use crate::{error::ApiError, startup::AppState};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::{future::Future, pin::Pin};

/// A JSON body of at most `CAIRN_MAX_BODY_BYTES`, decoded with the path of the first bad
/// field (`params.epochs`) so the error can name it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(4 << 20, |state| state.settings.max_body_bytes);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|length| length > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(unreadable_body)?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            // Every body is an object; serde would otherwise read a struct from an array.
            match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | None => decode_json(&body).map(JsonBody),
                Some(_) => Err(ApiError::BadRequest {
                    code: "invalid_type",
                    message: "the body must be a JSON object".to_owned(),
                    field: None,
                }),
            }
        })
    }
}

/// A request body that broke off or could not be decoded by the transport.
pub fn unreadable_body(err: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest { code: "unreadable_body", message: err.to_string(), field: None }
}

/// Decodes JSON, turning serde's error into a code, a message and the field's path.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|err| bad_request(err, None))
}

/// Decodes a part of a body already read as JSON (`params`, whose shape depends on `kind`);
/// fields are named from `parent` on, e.g. `params.epochs`.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value, parent: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| bad_request(err, Some(parent)))
}

fn bad_request(err: serde_path_to_error::Error<serde_json::Error>, parent: Option<&str>) -> ApiError {
    {
        let path = match (parent, err.path().to_string()) {
            (Some(parent), path) if path == "." => parent.to_owned(),
            (Some(parent), path) if path.starts_with('[') => format!("{parent}{path}"),
            (Some(parent), path) => format!("{parent}.{path}"),
            (None, path) => path,
        };
        let inner = err.into_inner();
        let message = inner.to_string();
        let (code, field) = match inner.classify() {
            serde_json::error::Category::Syntax if message.starts_with("number out of range") => {
                ("number_out_of_range", Some(path))
            }
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => ("malformed_json", None),
            serde_json::error::Category::Io => ("unreadable_body", None),
            serde_json::error::Category::Data => {
                if backticked(&message, "unknown field `").is_some() {
                    ("unknown_field", Some(path))
                } else if let Some(name) = backticked(&message, "missing field `") {
                    ("missing_field", Some(join_path(&path, name)))
                } else {
                    ("invalid_type", Some(path))
                }
            }
        };
        let field = field.filter(|field| field != ".");
        ApiError::BadRequest { code, message: strip_position(&message), field }
    }
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// serde_path_to_error reports the object holding a missing field; the error names the field.
fn join_path(parent: &str, name: &str) -> String {
    if parent == "." || parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn error_of(body: &str) -> (String, Option<String>) {
        let err = decode_json::<Outer>(body.as_bytes()).expect_err("must fail");
        let ApiError::BadRequest { code, field, .. } = err else { panic!("not a bad request: {err:?}") };
        (code.to_owned(), field)
    }

    #[test]
    fn names_the_field_of_each_kind_of_bad_json() {
        assert_eq!(
            error_of(r#"{"name": "a", "inner": {"count": "x"}}"#),
            ("invalid_type".into(), Some("inner.count".into()))
        );
        assert_eq!(
            error_of(r#"{"name": "a", "inner": {"count": 1, "extra": 2}}"#),
            ("unknown_field".into(), Some("inner.extra".into()))
        );
        assert_eq!(error_of(r#"{"inner": {"count": 1}}"#), ("missing_field".into(), Some("name".into())));
        assert_eq!(error_of(r#"{"name": "a", "#), ("malformed_json".into(), None));
    }
}
