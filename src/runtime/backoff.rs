//! Retry timing: exponential backoff with full jitter, a delay drawn uniformly from zero to
//! min(cap, base x 2^(attempt-1)), so retries of many runs spread out instead of stampeding.

use std::time::Duration;

pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(cap);
    let unit = crate::random::bytes::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or(u64::MAX / 2) as f64
        / u64::MAX as f64;
    ceiling.mul_f64(unit)
}

/// The upper bound of the delay before `attempt`, for showing and testing.
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(30))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stop_at_the_cap_and_are_jittered() {
        let (base, cap) = (Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(backoff_ceiling(1, base, cap), Duration::from_secs(5));
        assert_eq!(backoff_ceiling(3, base, cap), Duration::from_secs(20));
        assert_eq!(backoff_ceiling(10, base, cap), cap);
        let draws: Vec<Duration> = (0..200).map(|_| backoff(4, base, cap)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(40)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_secs(20))
                && draws.iter().any(|d| *d > Duration::from_secs(20)),
            "full jitter spreads over the range"
        );
    }
}
