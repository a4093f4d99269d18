//! A bounded, rate-limited queue for Kubernetes events: what a daemon publishes goes out at most
//! `per_second` on average after a first `burst`, at most `in_flight` at once, in order; when `queue`
//! events already wait, a new one is dropped (events are best effort, as in the kubelet; the state they
//! tell of is kept on the objects themselves, in conditions and annotations).
//!
//! Why: an agent publishes one event per Service it takes up, and a routed Service is taken up by every
//! node. A burst of Services on 100 nodes put tens of thousands of event POSTs on the API server at
//! once; it refused (429) or timed out (504) about 20 per Service, together with the Lease renewals and
//! the allocator's writes that shared their priority level (the scale bench).
//!
//! The bucket is written on tokio's clock (a few lines) rather than taken from a crate: the crates'
//! limiters wait on their own timers, which tokio's paused clock cannot drive in the tests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// The event every PureLB daemon publishes: Normal or Warning, the contract's `reason`, the message as
/// its note, and the daemon's `action` ("Allocate", "Validate", "Announce").
pub fn event(warning: bool, reason: &str, message: String, action: &str) -> kube::runtime::events::Event {
    use kube::runtime::events::{Event, EventType};
    Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(message),
        action: action.to_owned(),
        secondary: None,
    }
}

/// How fast events go out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventLimits {
    /// Average events per second once the burst is spent (> 0).
    pub per_second: f64,
    /// Events that go out at once after a quiet period (≥ 1).
    pub burst: u32,
    /// Events that may wait; one more is dropped.
    pub queue: usize,
    /// Events being published at once (≥ 1).
    pub in_flight: usize,
}

impl EventLimits {
    /// The daemons' defaults: 2 per second after a burst of 20, 1,000 waiting, 4 in flight.
    pub const DEFAULT: EventLimits = EventLimits { per_second: 2.0, burst: 20, queue: 1000, in_flight: 4 };
}

/// Why [`EventQueue::push`] did not queue an event.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// `queue` events already wait.
    #[error("{0} events already wait to be published")]
    Full(usize),
    /// The queue's task ended (the runtime is shutting down).
    #[error("the event queue has stopped")]
    Stopped,
}

/// The sending side of the queue; cheap to clone.
pub struct EventQueue<E> {
    tx: mpsc::Sender<E>,
    capacity: usize,
    waiting: Gauge,
}

impl<E> Clone for EventQueue<E> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), capacity: self.capacity, waiting: self.waiting.clone() }
    }
}

impl<E: Send + 'static> EventQueue<E> {
    /// Starts the queue's task on the current runtime; `publish` sends one event (its own timeout and
    /// error handling included).
    pub fn spawn<F, Fut>(limits: EventLimits, publish: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::spawn_counted(limits, Gauge::default(), publish)
    }

    /// [`EventQueue::spawn`], keeping `waiting` at the number of events that wait.
    pub fn spawn_counted<F, Fut>(limits: EventLimits, waiting: Gauge, publish: F) -> Self
    where
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let capacity = limits.queue.max(1);
        let (tx, mut rx) = mpsc::channel::<E>(capacity);
        let publish = Arc::new(publish);
        let permits = Arc::new(Semaphore::new(limits.in_flight.max(1)));
        let mut bucket = Bucket::new(limits.per_second, limits.burst);
        let shown = waiting.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                bucket.take().await;
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                shown.dec();
                let publish = publish.clone();
                tokio::spawn(async move {
                    publish(event).await;
                    drop(permit);
                });
            }
        });
        Self { tx, capacity, waiting }
    }

    /// Queues `event`; returns at once.
    pub fn push(&self, event: E) -> Result<(), PushError> {
        self.tx.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::Full(self.capacity),
            mpsc::error::TrySendError::Closed(_) => PushError::Stopped,
        })?;
        self.waiting.inc();
        Ok(())
    }

    /// How many events wait to be published (queued, or held for the rate; not those being published).
    pub fn waiting(&self) -> i64 {
        self.waiting.get()
    }
}

/// A token bucket on tokio's clock.
struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let per_second = if per_second.is_finite() && per_second > 0.0 { per_second } else { 1.0 };
        Self { tokens: burst, burst, per_second, at: Instant::now() }
    }

    /// Waits until one token is there and takes it.
    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a test publisher saw: (event, when after the start).
    type Seen = Arc<Mutex<Vec<(u32, Duration)>>>;

    /// A queue whose publisher records (event, when) and takes `publish_for` per event.
    fn recording(limits: EventLimits, publish_for: Duration) -> (EventQueue<u32>, Seen) {
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let queue = EventQueue::spawn(limits, move |e| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((e, start.elapsed()));
                tokio::time::sleep(publish_for).await;
            }
        });
        (queue, seen)
    }

    async fn settle(for_: Duration) {
        tokio::time::sleep(for_).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_out_at_once_then_the_rate_holds_in_order() {
        let limits = EventLimits { per_second: 2.0, burst: 3, queue: 100, in_flight: 10 };
        let (queue, seen) = recording(limits, Duration::ZERO);
        for e in 0..7 {
            queue.push(e).unwrap();
        }
        settle(Duration::from_secs(10)).await;
        let seen = seen.lock().unwrap().clone();
        let order: Vec<u32> = seen.iter().map(|(e, _)| *e).collect();
        assert_eq!(order, (0..7).collect::<Vec<_>>());
        let at: Vec<u128> = seen.iter().map(|(_, t)| t.as_millis()).collect();
        // Three at once, then one every 500 ms.
        assert_eq!(at, vec![0, 0, 0, 500, 1000, 1500, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_new_event_and_says_so() {
        // Nothing goes out for 100 s: the first is taken by the task, two wait, the fourth is dropped.
        let limits = EventLimits { per_second: 0.01, burst: 1, queue: 2, in_flight: 1 };
        let (queue, seen) = recording(limits, Duration::from_secs(1000));
        queue.push(0).unwrap();
        settle(Duration::from_millis(1)).await;
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.push(3), Err(PushError::Full(2)));
        settle(Duration::from_secs(1)).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_in_flight_are_published_at_once() {
        let limits = EventLimits { per_second: 1000.0, burst: 100, queue: 100, in_flight: 2 };
        let (queue, seen) = recording(limits, Duration::from_secs(1));
        for e in 0..5 {
            queue.push(e).unwrap();
        }
        settle(Duration::from_millis(3500)).await;
        let at: Vec<u64> = seen.lock().unwrap().iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(at, vec![0, 0, 1, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauge_counts_the_events_that_wait() {
        // One every second, no burst beyond the first: five pushed, one goes at once, four wait.
        let limits = EventLimits { per_second: 1.0, burst: 1, queue: 100, in_flight: 10 };
        let waiting = Gauge::default();
        let queue = EventQueue::spawn_counted(limits, waiting.clone(), |_: u32| async {});
        for e in 0..5 {
            queue.push(e).unwrap();
        }
        assert_eq!(waiting.get(), 5, "pushed, none published yet");
        settle(Duration::from_millis(1)).await;
        assert_eq!((waiting.get(), queue.waiting()), (4, 4));
        // Published at 0, 1 and 2 s.
        settle(Duration::from_millis(2000)).await;
        assert_eq!((waiting.get(), queue.waiting()), (2, 2));
        settle(Duration::from_secs(10)).await;
        assert_eq!((waiting.get(), queue.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_period_refills_the_burst_but_no_more() {
        let limits = EventLimits { per_second: 1.0, burst: 2, queue: 100, in_flight: 10 };
        let (queue, seen) = recording(limits, Duration::ZERO);
        settle(Duration::from_secs(60)).await;
        for e in 0..3 {
            queue.push(e).unwrap();
        }
        settle(Duration::from_secs(5)).await;
        let at: Vec<u64> = seen.lock().unwrap().iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(at, vec![60, 60, 61]);
    }
}
