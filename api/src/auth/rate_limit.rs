//! A per-token request budget per minute, kept in the API process.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimiter {
    per_minute: u32,
    /// Per key: when its current window started, and how many requests it holds.
    windows: Mutex<HashMap<i64, (Instant, u32)>>,
}

/// What counting a request found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// The first request of the key's window: a good moment for once-a-minute work such as
    /// recording when a token was last used.
    FirstInWindow,
    Again,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a request of `key`; `Err(seconds)` when its budget is spent, with the seconds
    /// until the next window.
    pub fn check(&self, key: i64) -> Result<Admitted, u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            return Err((WINDOW - now.duration_since(*start)).as_secs().max(1));
        }
        *count += 1;
        Ok(if *count == 1 { Admitted::FirstInWindow } else { Admitted::Again })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_budget_per_key() {
        let limiter = RateLimiter::new(2);
        assert_eq!(limiter.check(1), Ok(Admitted::FirstInWindow));
        assert_eq!(limiter.check(1), Ok(Admitted::Again));
        let retry_after = limiter.check(1).expect_err("third request refused");
        assert!((1..=60).contains(&retry_after));
        assert!(limiter.check(2).is_ok(), "another token has its own budget");
    }
}
