//! Failed authentication, throttled per client address: a token bucket per IP that each
//! failure drains, so guessing keys costs time and never reaches the database faster than the
//! bucket refills. Callers whose key is known are never held back by it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Failures an address may make at once, and how many more per second after that.
const BURST: f64 = 10.0;
const PER_SECOND: f64 = 1.0;
/// Addresses tracked before those that have fully recovered are forgotten.
const TRACKED: usize = 10_000;

#[derive(Clone, Default)]
pub(crate) struct Failures {
    inner: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl Failures {
    /// Whole seconds until `ip` may try again, if it has used up its failures.
    pub fn retry_after(&self, ip: IpAddr) -> Option<u64> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = refill(map.get_mut(&ip)?);
        (tokens < 1.0).then(|| ((1.0 - tokens) / PER_SECOND).ceil().max(1.0) as u64)
    }

    /// Count one failure from `ip`.
    pub fn record(&self, ip: IpAddr) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TRACKED {
            map.retain(|_, b| refill(b) < BURST);
        }
        let b = map.entry(ip).or_insert((BURST, Instant::now()));
        refill(b);
        b.0 = (b.0 - 1.0).max(0.0);
    }
}

fn refill(b: &mut (f64, Instant)) -> f64 {
    let now = Instant::now();
    b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * PER_SECOND).min(BURST);
    b.1 = now;
    b.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_back_after_its_burst_and_others_are_not() {
        let f = Failures::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..BURST as usize {
            assert_eq!(f.retry_after(a), None);
            f.record(a);
        }
        assert_eq!(f.retry_after(a), Some(1));
        assert_eq!(f.retry_after(b), None);
    }
}
