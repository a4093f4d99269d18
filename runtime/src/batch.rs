//! Batching a watch stream: the daemons take one event, then every event already waiting (up to a
//! bound), and decide once for the whole batch, so a burst of a thousand events costs one reconcile, not a
//! thousand, and nothing waits for a timer.
//!
//! Exposes [`take_ready`] and [`Batch`].

use futures::{FutureExt, Stream, StreamExt};

/// What [`take_ready`] took.
#[derive(Debug)]
pub struct Batch<T> {
    /// The items, in the stream's order.
    pub items: Vec<T>,
    /// The stream ended (after the items).
    pub ended: bool,
    /// The bound was reached: more may be waiting.
    pub full: bool,
}

/// `first` (what the caller's `stream.next()` returned) and every item of `stream` that is ready now,
/// without waiting, at most `max` in all (at least one).
pub fn take_ready<S: Stream + Unpin>(first: Option<S::Item>, stream: &mut S, max: usize) -> Batch<S::Item> {
    let mut batch = Batch { items: Vec::new(), ended: false, full: false };
    let mut next = first;
    loop {
        let Some(item) = next else {
            batch.ended = true;
            return batch;
        };
        batch.items.push(item);
        if batch.items.len() >= max.max(1) {
            batch.full = true;
            return batch;
        }
        match stream.next().now_or_never() {
            Some(item) => next = item,
            None => return batch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    #[test]
    fn takes_what_is_ready_and_stops_at_the_first_pending() {
        let mut s = stream::iter([2, 3]).chain(stream::pending()).chain(stream::iter([9]));
        let batch = take_ready(Some(1), &mut s, 10);
        assert_eq!((batch.items, batch.ended, batch.full), (vec![1, 2, 3], false, false));
    }

    #[test]
    fn says_when_the_stream_ended_after_its_items() {
        let mut s = stream::iter([2]);
        let batch = take_ready(Some(1), &mut s, 10);
        assert_eq!((batch.items, batch.ended, batch.full), (vec![1, 2], true, false));
        let batch = take_ready(None, &mut stream::iter([5]), 10);
        assert_eq!((batch.items, batch.ended), (Vec::<i32>::new(), true));
    }

    #[test]
    fn stops_at_the_bound_and_leaves_the_rest_waiting() {
        let mut s = stream::iter(2..=5);
        let batch = take_ready(Some(1), &mut s, 3);
        assert_eq!((batch.items, batch.ended, batch.full), (vec![1, 2, 3], false, true));
        let first = s.next().now_or_never().flatten();
        let batch = take_ready(first, &mut s, 3);
        assert_eq!((batch.items, batch.full), (vec![4, 5], false));
        // A bound of 0 still takes the item already received.
        assert_eq!(take_ready(Some(7), &mut stream::iter([8]), 0).items, [7]);
    }
}
