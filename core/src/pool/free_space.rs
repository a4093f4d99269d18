//! [`FreeSpace`]: the free addresses of a pool as disjoint, non-adjacent intervals in a `BTreeMap`
//! (start → end, inclusive). Every operation is O(log n) in the number of intervals, and memory is
//! O(number of holes), whatever the pool's size: a fresh `/64` is one entry.

use std::collections::BTreeMap;

/// Disjoint free intervals. Invariant: no two intervals overlap or touch (`end + 1 < next start`),
/// so each free run is exactly one entry and the lowest free address is the first key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FreeSpace {
    intervals: BTreeMap<u128, u128>,
}

// === impl FreeSpace ===

impl FreeSpace {
    /// Everything from `start` to `end` (inclusive) free.
    pub(super) fn new(start: u128, end: u128) -> Self {
        FreeSpace { intervals: BTreeMap::from([(start, end)]) }
    }

    pub(super) fn lowest(&self) -> Option<u128> {
        self.intervals.first_key_value().map(|(start, _)| *start)
    }

    /// Takes the lowest free value.
    pub(super) fn take_lowest(&mut self) -> Option<u128> {
        let (start, end) = self.intervals.pop_first()?;
        if start < end {
            self.intervals.insert(start + 1, end);
        }
        Some(start)
    }

    /// The interval holding `v`, if `v` is free.
    fn interval_of(&self, v: u128) -> Option<(u128, u128)> {
        let (&start, &end) = self.intervals.range(..=v).next_back()?;
        (v <= end).then_some((start, end))
    }

    pub(super) fn is_free(&self, v: u128) -> bool {
        self.interval_of(v).is_some()
    }

    /// Takes `v`, splitting its interval; false when `v` was not free.
    pub(super) fn take(&mut self, v: u128) -> bool {
        let Some((start, end)) = self.interval_of(v) else {
            return false;
        };
        self.intervals.remove(&start);
        if start < v {
            self.intervals.insert(start, v - 1);
        }
        if v < end {
            self.intervals.insert(v + 1, end);
        }
        true
    }

    /// Gives `v` back, merging it with the free intervals that end just below or start just above
    /// it; false when `v` was already free. The caller keeps `v` inside the pool.
    pub(super) fn give(&mut self, v: u128) -> bool {
        let below = self.intervals.range(..=v).next_back().map(|(&start, &end)| (start, end));
        if below.is_some_and(|(_, end)| v <= end) {
            return false;
        }
        let start = match below {
            Some((start, end)) if end.checked_add(1) == Some(v) => start,
            _ => v,
        };
        let end = match v.checked_add(1).and_then(|next| self.intervals.remove(&next)) {
            Some(end) => end,
            None => v,
        };
        // Inserting at `start` replaces the interval below when it was merged.
        self.intervals.insert(start, end);
        true
    }

    /// The free intervals, lowest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.intervals.iter().map(|(&start, &end)| (start, end))
    }

    /// How many intervals (holes between allocations) there are.
    pub(super) fn intervals(&self) -> usize {
        self.intervals.len()
    }
}
