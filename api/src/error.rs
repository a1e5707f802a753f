//! One error type for every handler: each variant has an HTTP status and a stable JSON body
//! `{"error": "snake_case_code", "message": "...", "field": "..."}`.
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use cairn_domain::ValidationError;
use serde::Serialize;
use std::fmt;

/// Seconds a client should wait before retrying when a dependency is away.
const RETRY_AFTER_SECONDS: u32 = 2;

#[derive(Debug)]
pub enum ApiError {
    /// The body or query is not what the endpoint reads: bad JSON, wrong type, unknown field.
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// Well-formed input that breaks a rule.
    Invalid(ValidationError),
    NotFound(&'static str),
    /// No credentials, or ones that are unknown, expired or revoked.
    Unauthorized,
    /// Signed in, but the role is too weak (or the form's CSRF token is wrong).
    Forbidden(String),
    TooManyRequests {
        retry_after: u64,
    },
    Conflict {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    PayloadTooLarge {
        limit: usize,
    },
    /// Postgres or Redis cannot be reached: try again shortly.
    Unavailable(String),
    Internal(String),
}

/// The body of every error response.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct ErrorBody<'a> {
    /// A stable snake_case code, such as `invalid` or `not_found`.
    error: &'a str,
    /// What went wrong, for people.
    message: &'a str,
    /// The input field at fault, such as `params.epochs`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, message))
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Conflict { code, .. } => code,
            Self::Invalid(_) => "invalid_value",
            Self::NotFound(_) => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } | Self::Conflict { field, .. } => field.as_deref(),
            Self::Invalid(err) => Some(&err.field),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::BadRequest { message, .. } | Self::Conflict { message, .. } => message.clone(),
            Self::Invalid(err) => err.message.clone(),
            Self::NotFound(what) => format!("no such {what}"),
            Self::Unauthorized => "sign in first: send `Authorization: Bearer <token>`".to_owned(),
            Self::Forbidden(message) => message.clone(),
            Self::TooManyRequests { retry_after } => format!("too many requests; retry in {retry_after} s"),
            Self::PayloadTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            Self::Unavailable(what) => format!("{what} is unavailable; retry in a few seconds"),
            // Details stay in the log; the client learns only that it was our fault.
            Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal(detail) => write!(f, "internal error: {detail}"),
            other => write!(f, "{}: {}", other.code(), other.message()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        let message = self.message();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) => {
                response.insert_header(("Retry-After", RETRY_AFTER_SECONDS.to_string()));
            }
            Self::TooManyRequests { retry_after } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            Self::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        response.json(ErrorBody { error: self.code(), message: &message, field: self.field() })
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::Invalid(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                Self::Unavailable("the database".to_owned())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}
