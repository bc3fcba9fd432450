//! Token buckets for flood control.
//!
//! A bucket holds up to `burst` tokens and gains `rate` per second. Each
//! message takes one; with none left the message is refused. Time is passed
//! in by the caller, so the logic is tested without sleeping.

use std::time::Instant;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `rate` per second.
    pub fn new(burst: u32, rate: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            burst: f64::from(burst.max(1)),
            rate: rate.max(0.0),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Flood control for one session: a bucket for messages, and a second
/// bucket for refusals, so a client that keeps sending after `slow_down`
/// is disconnected while one that backs off is not.
#[derive(Debug, Clone)]
pub struct FloodControl {
    messages: TokenBucket,
    strikes: TokenBucket,
}

/// What flood control decides about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Allow,
    /// Refuse it with `slow_down`.
    SlowDown,
    /// Refuse it and disconnect the client.
    Disconnect,
}

/// Refusals tolerated in a burst before disconnecting...
pub const STRIKE_BURST: u32 = 20;
/// ...and how fast that allowance comes back, per second.
const STRIKE_RATE: f64 = 1.0;

impl FloodControl {
    /// Allows bursts of `burst` messages and `rate` messages per second.
    pub fn new(burst: u32, rate: f64, now: Instant) -> FloodControl {
        FloodControl {
            messages: TokenBucket::new(burst, rate, now),
            strikes: TokenBucket::new(STRIKE_BURST, STRIKE_RATE, now),
        }
    }

    /// Judges one message sent at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.messages.try_take(now) {
            Verdict::Allow
        } else if self.strikes.try_take(now) {
            Verdict::SlowDown
        } else {
            Verdict::Disconnect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5.0, t0);
        assert!((0..10).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(
            b.try_take(t0 + Duration::from_millis(200)),
            "one token per 200 ms"
        );
        assert!(!b.try_take(t0 + Duration::from_millis(250)));
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..10).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    #[test]
    fn persistent_flooding_disconnects_but_backing_off_does_not() {
        let t0 = Instant::now();
        let mut f = FloodControl::new(10, 5.0, t0);
        let verdicts: Vec<Verdict> = (0..31).map(|_| f.check(t0)).collect();
        assert_eq!(verdicts[..10], [Verdict::Allow; 10]);
        assert_eq!(verdicts[10..30], [Verdict::SlowDown; 20]);
        assert_eq!(verdicts[30], Verdict::Disconnect);

        let mut f = FloodControl::new(10, 5.0, t0);
        for i in 0..200u64 {
            // 4 messages per second, under the rate of 5: never refused.
            assert_eq!(f.check(t0 + Duration::from_millis(250 * i)), Verdict::Allow);
        }
    }
}
