//! Rate limits of `PUT /v2/api_auth`: per source address and per API key,
//! each a GCRA (the token bucket as one "theoretical arrival time" per key),
//! so guessing keys or piling up tokens is slow from any one place and for
//! any one key.
//!
//! Also the bound on simulations running at once.
//!
//! Pure over the time passed in: the handler passes tokio's clock, the
//! tests their own instants. Keys whose bucket is full again are forgotten
//! (swept when the map doubles), so the maps stay bounded by the keys seen
//! in the last `burst × every`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::state::Rate;

/// One rate over many keys.
#[derive(Debug)]
struct Limiter<K> {
    rate: Rate,
    /// Per key: when its bucket is full again (GCRA's theoretical arrival
    /// time).
    tat: BTreeMap<K, Instant>,
    /// The size past which the next check sweeps full buckets.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl<K: Ord + Clone> Limiter<K> {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            tat: BTreeMap::new(),
            sweep_at: FIRST_SWEEP,
        }
    }

    /// Counts one attempt of `key` at `now`: Ok, or Err with how long until
    /// the next one would pass.
    fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.tat.len() >= self.sweep_at {
            self.tat.retain(|_, tat| *tat > now);
            self.sweep_at = (self.tat.len() * 2).max(FIRST_SWEEP);
        }
        let every = self.rate.every;
        let tolerance = every.saturating_mul(self.rate.burst.max(1) - 1);
        let tat = self.tat.get(key).copied().map_or(now, |tat| tat.max(now));
        let ahead = tat.saturating_duration_since(now);
        if ahead > tolerance {
            return Err(ahead.saturating_sub(tolerance));
        }
        self.tat.insert(key.clone(), tat + every);
        Ok(())
    }
}

/// Both limits of `PUT /v2/api_auth`.
#[derive(Debug)]
pub(crate) struct Logins {
    by_source: Mutex<Limiter<IpAddr>>,
    /// By the SHA-256 of the key presented (keys are never kept).
    by_key: Mutex<Limiter<String>>,
}

impl Logins {
    pub fn new(per_source: Rate, per_key: Rate) -> Self {
        Self {
            by_source: Mutex::new(Limiter::new(per_source)),
            by_key: Mutex::new(Limiter::new(per_key)),
        }
    }

    /// One attempt from `source`.
    pub fn source(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        self.by_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(&source, now)
    }

    /// One attempt with the key whose SHA-256 is `key_hash`.
    pub fn key(&self, key_hash: &str, now: Instant) -> Result<(), Duration> {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(&key_hash.to_owned(), now)
    }
}

/// How many `POST .../simulate` requests the server takes at once (all
/// accounts together): past it, 503 at once rather than a queue that grows
/// with every client.
#[derive(Debug)]
pub(crate) struct Simulations {
    running: Arc<Semaphore>,
    max: usize,
}

impl Simulations {
    pub fn new(max: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A place for one simulation, held until the permit drops; Err with
    /// how many run when every place is taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, usize> {
        Arc::clone(&self.running)
            .try_acquire_owned()
            .map_err(|_| self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulations_past_the_bound_are_refused_until_one_ends() {
        let simulations = Simulations::new(2);
        let first = simulations.admit().unwrap();
        let _second = simulations.admit().unwrap();
        assert_eq!(simulations.admit().err(), Some(2));
        drop(first);
        assert!(simulations.admit().is_ok());
    }

    const RATE: Rate = Rate {
        burst: 3,
        every: Duration::from_secs(10),
    };

    #[test]
    fn a_burst_then_one_per_period() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE);
        for _ in 0..3 {
            assert_eq!(limiter.check(&1, t0), Ok(()));
        }
        assert_eq!(limiter.check(&1, t0), Err(Duration::from_secs(10)));
        // Another key has its own bucket.
        assert_eq!(limiter.check(&2, t0), Ok(()));
        // One more after a period, not two.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.check(&1, later), Ok(()));
        assert_eq!(limiter.check(&1, later), Err(Duration::from_secs(10)));
        // A refused attempt does not push the next one further.
        assert_eq!(
            limiter.check(&1, later + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        // Full again after burst × every.
        let rested = later + Duration::from_secs(30);
        for _ in 0..3 {
            assert_eq!(limiter.check(&1, rested), Ok(()));
        }
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE);
        for key in 0..FIRST_SWEEP {
            limiter.check(&key, t0).unwrap();
        }
        assert_eq!(limiter.tat.len(), FIRST_SWEEP);
        let rested = t0 + Duration::from_secs(11);
        limiter.check(&usize::MAX, rested).unwrap();
        assert_eq!(limiter.tat.len(), 1);
    }
}
