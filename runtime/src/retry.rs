//! [`retry`]: one write to the API server with a timeout per call, retried with exponential backoff
//! ([`RetryPolicy`]). An object that no longer exists (404) ends the retries as done: there is nothing
//! left to write. Both daemons write through it.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently a write is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one).
    pub attempts: u32,
    /// The bound on each call.
    pub timeout: Duration,
    /// The pause after the first failure; doubled after each, up to `max_delay`.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

/// A write given up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The last attempt was refused or failed.
    #[error("{what}: {source}")]
    Api {
        /// What was written, and of what.
        what: String,
        /// The last error.
        #[source]
        source: kube::Error,
    },
    /// Every attempt timed out.
    #[error("{what}: timed out {attempts} times")]
    Timeout {
        /// What was written, and of what.
        what: String,
        /// How many attempts.
        attempts: u32,
    },
}

/// Runs `call` under `policy`. `what` names the write in logs and errors ("status of ns/name").
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, what: &str, mut call: F) -> Result<(), RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let attempts = policy.attempts.max(1);
    let mut delay = policy.first_delay;
    let mut attempt = 1;
    loop {
        match tokio::time::timeout(policy.timeout, call()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => return Ok(()),
            Ok(Err(source)) if attempt >= attempts => {
                return Err(RetryError::Api { what: what.to_string(), source });
            }
            Err(_) if attempt >= attempts => {
                return Err(RetryError::Timeout { what: what.to_string(), attempts });
            }
            Ok(Err(e)) => tracing::debug!(%what, attempt, error = %e, "write failed; retrying"),
            Err(_) => tracing::debug!(%what, attempt, "write timed out; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(policy.max_delay);
        attempt += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const QUICK: RetryPolicy = RetryPolicy {
        attempts: 3,
        timeout: Duration::from_millis(50),
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("no", "Reason").with_code(code)))
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_a_missing_object_is_done() {
        let calls = AtomicU32::new(0);
        let r = retry(&QUICK, "status of a/b", || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 { Err(status(429)) } else { Ok(()) }
        })
        .await;
        assert!(r.is_ok() && calls.load(Ordering::SeqCst) == 2);
        let calls = AtomicU32::new(0);
        let r = retry(&QUICK, "status of a/b", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(status(404))
        })
        .await;
        assert!(r.is_ok() && calls.load(Ordering::SeqCst) == 1, "404: nothing left to write");
    }

    #[tokio::test]
    async fn it_gives_up_after_the_attempts_with_the_last_error_or_the_timeouts() {
        let calls = AtomicU32::new(0);
        let r = retry(&QUICK, "status of a/b", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(status(500))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(matches!(&r, Err(RetryError::Api { what, .. }) if what == "status of a/b"), "{r:?}");
        let r = retry(&QUICK, "status of a/b", || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), kube::Error>(())
        })
        .await;
        assert!(matches!(r, Err(RetryError::Timeout { attempts: 3, .. })), "{r:?}");
    }
}
