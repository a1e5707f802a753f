//! Who is asking, and what they may do. REST clients send `Authorization: Bearer <token>`;
//! the dashboard uses a session cookie with a CSRF token. Every experiment belongs to a team,
//! and a user's role in that team decides: a team's resources seen from outside it are 404
//! (their existence is not revealed), an action above the user's role is 403.
pub mod access;
pub mod audit;
pub mod principal;
pub mod rate_limit;
pub mod secrets;

pub use principal::{Principal, SessionUser};

use serde::Serialize;
use std::{fmt, str::FromStr};

/// A user's role in a team, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything of the team (what managers need).
    Viewer,
    /// Submits and cancels runs, creates experiments.
    Member,
    /// Manages members and reads the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role `{other}`; expected viewer, member or admin")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
