//! Lease expiry, decided on the observer's monotonic clock: a Lease is expired when it has been seen
//! unchanged (same holder and resourceVersion) for its whole duration. Wall-clock timestamps written by
//! other machines are never compared with ours, so clock skew cannot cause two holders.

use std::time::{Duration, Instant};

/// What one observer has seen of one Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseObservation {
    version: String,
    since: Instant,
}

/// The verdict on a Lease held by someone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// Renewed (or first seen) within its duration: the holder is alive.
    Held,
    /// Unchanged for its whole duration: it may be taken over.
    Expired,
    /// Nobody holds it (empty holder): it may be taken at once.
    Free,
}

impl LeaseObservation {
    /// Records that the Lease was seen with `version` (its resourceVersion) at `now`; returns the verdict.
    /// `holder` is the holderIdentity seen, `duration` its leaseDurationSeconds.
    pub fn observe(
        previous: Option<&LeaseObservation>,
        version: &str,
        holder: Option<&str>,
        duration: Duration,
        now: Instant,
    ) -> (LeaseObservation, LeaseVerdict) {
        let since = match previous {
            Some(p) if p.version == version => p.since,
            _ => now,
        };
        let obs = LeaseObservation { version: version.to_string(), since };
        let verdict = if holder.is_none_or(str::is_empty) {
            LeaseVerdict::Free
        } else if now.saturating_duration_since(since) >= duration {
            LeaseVerdict::Expired
        } else {
            LeaseVerdict::Held
        };
        (obs, verdict)
    }

    /// When it expires unless it changes: the time it was first seen unchanged, plus `duration`.
    pub fn deadline(&self, duration: Duration) -> Instant {
        self.since + duration
    }

    /// The same observation, its clock restarted at `now`: time during which the observer could not
    /// see the API server (its own view was stale) is no evidence that the holder stopped renewing, so
    /// it must not count towards expiry. After the view is fresh again, the holder has a whole duration.
    pub fn restarted(&self, now: Instant) -> LeaseObservation {
        LeaseObservation { version: self.version.clone(), since: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_for_its_duration_expires() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let (o, v) = LeaseObservation::observe(None, "1", Some("a"), d, t0);
        assert_eq!(v, LeaseVerdict::Held);
        let (o, v) = LeaseObservation::observe(Some(&o), "1", Some("a"), d, t0 + Duration::from_secs(9));
        assert_eq!(v, LeaseVerdict::Held);
        let (_, v) = LeaseObservation::observe(Some(&o), "1", Some("a"), d, t0 + Duration::from_secs(10));
        assert_eq!(v, LeaseVerdict::Expired);
    }

    #[test]
    fn a_renewal_restarts_the_clock() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let (o, _) = LeaseObservation::observe(None, "1", Some("a"), d, t0);
        let (o, v) = LeaseObservation::observe(Some(&o), "2", Some("a"), d, t0 + Duration::from_secs(9));
        assert_eq!(v, LeaseVerdict::Held);
        let (_, v) = LeaseObservation::observe(Some(&o), "2", Some("a"), d, t0 + Duration::from_secs(15));
        assert_eq!(v, LeaseVerdict::Held, "9s + 6s since the renewal is within 10s");
    }

    #[test]
    fn a_restarted_observation_gives_the_holder_a_whole_duration() {
        let t0 = Instant::now();
        let d = Duration::from_secs(4);
        let (o, _) = LeaseObservation::observe(None, "1", Some("a"), d, t0);
        // Seen unchanged for 10 s, but the observer was blind from t0 + 1 s: restart at t0 + 10 s.
        let o = o.restarted(t0 + Duration::from_secs(10));
        let (o, v) = LeaseObservation::observe(Some(&o), "1", Some("a"), d, t0 + Duration::from_secs(13));
        assert_eq!(v, LeaseVerdict::Held);
        let (_, v) = LeaseObservation::observe(Some(&o), "1", Some("a"), d, t0 + Duration::from_secs(14));
        assert_eq!(v, LeaseVerdict::Expired);
    }

    #[test]
    fn released_lease_is_free() {
        let (_, v) = LeaseObservation::observe(None, "3", Some(""), Duration::from_secs(10), Instant::now());
        assert_eq!(v, LeaseVerdict::Free);
    }
}
