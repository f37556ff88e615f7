//! The one way a model call is retried: turns, grading and compaction share the attempt count,
//! the backoff and the respect for upstream's `Retry-After`; only what each logs differs, and
//! that is the caller's hook.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{Flow, RetryPolicy};
use crate::Result;

impl RetryPolicy {
    /// Exponential backoff with jitter; a `Retry-After` from upstream wins when longer.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match retry_after {
            Some(ra) => ra
                .min(self.max_delay.max(Duration::from_secs(60)))
                .max(jittered),
            None => jittered,
        }
    }
}

/// How a retried call ended.
pub(super) enum Retried<T> {
    /// The last attempt's answer: a response, or an error not worth another attempt (not
    /// transient, or the attempts ran out).
    Finished {
        result: agentd_models::Result<T>,
        attempts: u32,
    },
    /// `cancel` fired during an attempt or a pause; the call in flight was dropped.
    Cancelled,
    /// The hook said stop.
    Abandoned,
}

/// Make `call` (given the attempt's number, from 1) until it succeeds, fails for good or
/// `policy` runs out of attempts. Before each pause, `on_retry` hears the attempt, its error
/// and the pause ahead; it logs what the caller wants logged, and `Flow::Stop` ends the retries.
// Plain closures returning futures rather than async closures: the futures of a generic
// `AsyncFnMut` cannot be shown to be `Send`, and a wake runs on a spawned task.
pub(super) async fn with_retries<T, C, H>(
    policy: &RetryPolicy,
    cancel: Option<&CancellationToken>,
    mut on_retry: impl FnMut(u32, &agentd_models::Error, Duration) -> H,
    mut call: impl FnMut(u32) -> C,
) -> Result<Retried<T>>
where
    C: Future<Output = agentd_models::Result<T>>,
    H: Future<Output = Result<Flow>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match cancel {
            Some(cancel) => tokio::select! {
                r = call(attempt) => r,
                () = cancel.cancelled() => return Ok(Retried::Cancelled),
            },
            None => call(attempt).await,
        };
        let e = match result {
            Err(e) if e.retryable() && attempt < policy.max_attempts => e,
            result => {
                return Ok(Retried::Finished {
                    result,
                    attempts: attempt,
                });
            }
        };
        let pause = policy.delay(attempt, e.retry_after());
        if on_retry(attempt, &e, pause).await? == Flow::Stop {
            return Ok(Retried::Abandoned);
        }
        match cancel {
            Some(cancel) => tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = cancel.cancelled() => return Ok(Retried::Cancelled),
            },
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// The hook of a call whose retries show in tracing only: its log looks the same whether it
/// took one attempt or five.
pub(super) fn quietly(
    what: &'static str,
    log_id: &str,
) -> impl FnMut(u32, &agentd_models::Error, Duration) -> std::future::Ready<Result<Flow>> {
    move |attempt, e, pause| {
        tracing::warn!(session = log_id, attempt, error = %e, ?pause, "{what} failed; retrying");
        std::future::ready(Ok(Flow::Continue))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{Retried, with_retries};
    use crate::harness::{Flow, RetryPolicy};

    fn instant(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    fn overloaded() -> agentd_models::Error {
        agentd_models::Error::Overloaded {
            message: "busy".into(),
            retry_after: None,
        }
    }

    /// Runs `with_retries` over answers given in order; returns how it ended and the attempts
    /// the hook heard of.
    async fn run(
        policy: RetryPolicy,
        answers: Vec<agentd_models::Result<u32>>,
        hook_says: Flow,
        cancel: Option<&CancellationToken>,
    ) -> (Retried<u32>, Vec<u32>) {
        let answers = std::sync::Mutex::new(answers.into_iter());
        let heard = std::sync::Mutex::new(Vec::new());
        let r = with_retries(
            &policy,
            cancel,
            |attempt, _, _| {
                heard.lock().unwrap().push(attempt);
                std::future::ready(Ok(hook_says))
            },
            |_| std::future::ready(answers.lock().unwrap().next().unwrap()),
        )
        .await
        .unwrap();
        (r, heard.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_passes() {
        let (r, heard) = run(
            instant(5),
            vec![Err(overloaded()), Err(overloaded()), Ok(7)],
            Flow::Continue,
            None,
        )
        .await;
        assert!(matches!(
            r,
            Retried::Finished {
                result: Ok(7),
                attempts: 3
            }
        ));
        assert_eq!(heard, vec![1, 2]);
    }

    #[tokio::test]
    async fn the_last_attempt_s_failure_is_final() {
        let (r, heard) = run(
            instant(2),
            vec![Err(overloaded()), Err(overloaded())],
            Flow::Continue,
            None,
        )
        .await;
        assert!(matches!(
            r,
            Retried::Finished {
                result: Err(agentd_models::Error::Overloaded { .. }),
                attempts: 2
            }
        ));
        assert_eq!(heard, vec![1]);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let rejected = agentd_models::Error::Rejected {
            status: 400,
            message: "bad".into(),
        };
        let (r, heard) = run(instant(5), vec![Err(rejected)], Flow::Continue, None).await;
        assert!(matches!(
            r,
            Retried::Finished {
                result: Err(_),
                attempts: 1
            }
        ));
        assert!(heard.is_empty());
    }

    #[tokio::test]
    async fn the_hook_can_give_up() {
        let (r, heard) = run(instant(5), vec![Err(overloaded())], Flow::Stop, None).await;
        assert!(matches!(r, Retried::Abandoned));
        assert_eq!(heard, vec![1]);
    }

    #[tokio::test]
    async fn a_cancel_ends_the_retries() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let long = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
        };
        let answers = vec![Err(overloaded())];
        // The call itself may win the race with the cancel; the pause after it cannot.
        let (r, _) = run(long, answers, Flow::Continue, Some(&cancel)).await;
        assert!(matches!(r, Retried::Cancelled));
    }

    #[test]
    fn retry_after_wins_when_longer_than_the_backoff() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(30),
        };
        let ra = Some(Duration::from_secs(5));
        assert_eq!(p.delay(1, ra), Duration::from_secs(5));
        // A Retry-After is honoured up to a minute, even past max_delay.
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        assert!(p.delay(3, None) <= Duration::from_millis(40));
    }
}
