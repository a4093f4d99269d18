//! Polling until something becomes true, with a deadline and an error that says what was last seen.
//!
//! Exposes [`wait_for`] and the [`Observation`] trait it accepts.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::LabError;

/// The result of one poll of [`wait_for`]: done with a value, or not yet (with what was seen, if known).
///
/// Implemented for `Option<T>` (`None` = not yet) and for `Result<T, E: Display>` (`Err` = not yet, and
/// the error text is reported as the last observation when the wait times out).
pub trait Observation {
    type Value;
    /// `Ok(value)` when done, `Err(what was seen)` when not yet.
    fn into_outcome(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Observation for Result<T, E> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// Calls `f` every 20–50 ms until it returns `Some(value)` / `Ok(value)`, for at most `timeout` (a call
/// still running at the deadline is abandoned). The error names `what` and the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, LabError>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Observation<Value = T>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    let mut last: Option<String> = None;
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(observed) => match observed.into_outcome() {
                Ok(value) => return Ok(value),
                Err(seen) => last = seen.or(last),
            },
            Err(_) => last = Some(format!("the last check was still running at the deadline ({last:?})")),
        }
        if Instant::now() + pause >= deadline {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                timeout,
                last: last.unwrap_or_else(|| "not yet true".to_owned()),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause + Duration::from_millis(10)).min(Duration::from_millis(50));
    }
}
