//! How anything in the pipeline is tried again: one policy type, on
//! backon. The importer's requests to the API and its batches to SQS, the
//! start-up wait, the transformer's receives while SQS is unreachable and
//! the delay before a failed message is tried again are all a [`Backoff`].

use backon::{BackoffBuilder as _, ExponentialBuilder};
use std::num::NonZeroU32;
use std::time::Duration;

/// Pauses that start at `first` and double up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first pause.
    pub first: Duration,
    /// No pause is longer.
    pub max: Duration,
    /// Tries in all, the first included; `None`: until the caller stops.
    pub attempts: Option<NonZeroU32>,
    /// Each pause is a random fraction of the exponential one ("full
    /// jitter"), so that clients that failed together do not all retry
    /// together.
    pub full_jitter: bool,
}

impl Backoff {
    /// The exponential pauses, as backon's builder, without the jitter:
    /// give each pause to [`Backoff::jittered`] (in backon's `adjust`),
    /// because backon's own jitter adds to the pause rather than drawing it.
    pub fn builder(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.max);
        match self.attempts {
            Some(attempts) => builder.with_max_times(attempts.get() as usize - 1),
            None => builder.without_max_times(),
        }
    }

    /// The pause to take instead of backon's `pause`.
    pub fn jittered(&self, pause: Duration) -> Duration {
        if self.full_jitter {
            pause.mul_f64(fastrand::f64())
        } else {
            pause
        }
    }

    /// The pauses to take, in order, jitter included; ends when the
    /// attempts are spent.
    pub fn pauses(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let policy = *self;
        self.builder()
            .build()
            .map(move |pause| policy.jittered(pause))
    }

    /// The pause before try `n` (2 for the first retry), without jitter:
    /// for a delay derived from a count kept elsewhere, such as a message's
    /// receive count.
    pub fn pause_before(&self, n: u32) -> Duration {
        // Past 64 doublings any pause is at `max`.
        let retries = n.clamp(2, 64) as usize - 1;
        let unbounded = Self {
            attempts: None,
            ..*self
        };
        unbounded
            .builder()
            .build()
            .nth(retries - 1)
            .unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn doubling(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            attempts: None,
            full_jitter: false,
        }
    }

    #[test]
    fn pauses_double_up_to_the_max() {
        let pauses: Vec<u64> = doubling(SECOND, 30 * SECOND)
            .pauses()
            .take(7)
            .map(|p| p.as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn attempts_count_the_first_try() {
        let policy = Backoff {
            attempts: NonZeroU32::new(4),
            ..doubling(SECOND, 30 * SECOND)
        };
        assert_eq!(policy.pauses().count(), 3);
    }

    #[test]
    fn full_jitter_draws_each_pause_below_the_exponential_one() {
        let policy = Backoff {
            full_jitter: true,
            ..doubling(SECOND, 30 * SECOND)
        };
        let pauses: Vec<Duration> = policy.pauses().take(200).collect();
        let ceilings = doubling(SECOND, 30 * SECOND).pauses();
        assert!(pauses.iter().zip(ceilings).all(|(p, c)| *p <= c));
        assert!(
            pauses.windows(2).any(|w| w[0] != w[1]),
            "the pauses are drawn, not fixed"
        );
    }

    #[test]
    fn the_pause_before_a_numbered_try_doubles_from_the_second() {
        let policy = doubling(10 * SECOND, 15 * 60 * SECOND);
        let pauses: Vec<u64> = (2..=10).map(|n| policy.pause_before(n).as_secs()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(policy.pause_before(0), 10 * SECOND);
        assert_eq!(policy.pause_before(u32::MAX), 15 * 60 * SECOND);
    }
}
