//! The one retry layer under the S3 backend (the SDK's own retries are off): bounded attempts,
//! exponential backoff with jitter, only for retryable kinds, honouring `retry_after`.

use std::future::Future;
use std::time::Duration;

use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::error::StoreError;

/// How hard to try a request before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each retry.
    pub initial_backoff: Duration,
    /// Cap on one backoff, so a long outage is probed at a steady pace.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

// Only the S3 backend retries; without it the policy is a plain value.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (after `attempt` failures): half the exponential
    /// backoff fixed, half random, so many clients throttled at once do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter = OsRng.try_next_u32().unwrap_or(u32::MAX / 2);
        half + half.mul_f64(f64::from(jitter) / f64::from(u32::MAX))
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or attempts run out.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        what: &'static str,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_retryable() && attempt < self.max_attempts => {
                    let wait = err.retry_after().unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(what, attempt, error = %err, ?wait, "retrying store request");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::StoreErrorKind;

    fn failing_then_ok(
        calls: &AtomicU32,
        failures: u32,
        kind: StoreErrorKind,
    ) -> impl Future<Output = Result<u32, StoreError>> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= failures {
                Err(StoreError::new(kind, "injected"))
            } else {
                Ok(n)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result = policy
            .run("test", || {
                failing_then_ok(&calls, 2, StoreErrorKind::Unavailable)
            })
            .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result = policy
            .run("test", || {
                failing_then_ok(&calls, 10, StoreErrorKind::Timeout)
            })
            .await;
        assert_eq!(result.unwrap_err().kind(), StoreErrorKind::Timeout);
        assert_eq!(calls.load(Ordering::SeqCst), policy.max_attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result = RetryPolicy::default()
            .run("test", || {
                failing_then_ok(&calls, 1, StoreErrorKind::NotFound)
            })
            .await;
        assert_eq!(result.unwrap_err().kind(), StoreErrorKind::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = RetryPolicy::default()
            .run("test", || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(StoreError::new(StoreErrorKind::Unavailable, "slow down")
                            .with_retry_after(Duration::from_secs(7)))
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert!(result.is_ok());
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..20 {
            let wait = policy.backoff(attempt);
            let exp =
                (policy.initial_backoff * (1 << (attempt - 1).min(16))).min(policy.max_backoff);
            assert!(
                wait >= exp / 2 && wait <= exp,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
