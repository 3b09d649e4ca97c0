//! Reconnect delays: exponential with full jitter and a cap, forever.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Produces reconnect delays; [`Backoff::reset`] after a tunnel that worked.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
}

impl Backoff {
    /// Delays start near `min` and double each attempt up to `max`; each is then jittered by
    /// adding a random part of up to one more step (backon's jitter), so a delay lies
    /// between the step and twice the step — at most just under `2 × max` — and a fleet of
    /// agents does not reconnect in lock-step after a management-plane restart.
    pub fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max.max(min))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            current: builder.build(),
            builder,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // `without_max_times` makes the iterator endless; the fallback is defensive.
        self.current
            .next()
            .unwrap_or(self.builder.build().next().unwrap_or_default())
    }

    /// Starts again from the minimum delay.
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "{delays:?}"
        );
        assert!(delays[15] >= Duration::from_secs(1), "{delays:?}");
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(300));
    }
}
