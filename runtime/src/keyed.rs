//! [`Keyed`]: work queued per key (a Service), run one at a time per key with the newest winning, and
//! at most N keys at once — the shape of both daemons' writes to the API server. A write queued while an
//! older one for the same key waits or runs supersedes every older one still waiting: only the newest
//! is applied after the running one. [`Keyed::halt`] stops everything at once (the allocator lost its
//! leadership); [`Keyed::drain`] waits for what is queued (SIGTERM).
//!
//! Memory: a queued piece of work is a small task (the closure that makes it); its future, which may
//! be several KB, exists only while it runs (boxed then, so at most `concurrency` of them at once), and
//! a task's memory is freed as soon as it ends. A burst of 5,000 writes held 28 MB of finished and
//! waiting tasks when every task was sized for its whole future and kept until the next submit (heaptrack,
//! the allocator holding 10,000 Services).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Per-key, newest-wins, bounded-concurrency work. Cheap to clone; clones share the queue.
pub struct Keyed<K> {
    generation: Arc<AtomicU64>,
    /// The newest generation queued per key, while one is queued or running.
    latest: Arc<Mutex<HashMap<K, u64>>>,
    /// One lock per key with work queued or running.
    locks: Arc<Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>>,
    concurrency: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    /// The tasks queued or running, by generation; each removes itself when it ends.
    tasks: Arc<Mutex<HashMap<u64, AbortHandle>>>,
}

impl<K> Clone for Keyed<K> {
    fn clone(&self) -> Self {
        Self {
            generation: self.generation.clone(),
            latest: self.latest.clone(),
            locks: self.locks.clone(),
            concurrency: self.concurrency.clone(),
            in_flight: self.in_flight.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a queued piece of work until it ends, however it ends (done, superseded or aborted), and
/// then forgets its task.
struct InFlight {
    count: Arc<AtomicUsize>,
    tasks: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    generation: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.tasks).remove(&self.generation);
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Keyed<K> {
    /// At most `concurrency` keys worked on at once (at least one).
    pub fn new(concurrency: usize) -> Self {
        Self {
            generation: Arc::new(AtomicU64::new(0)),
            latest: Arc::default(),
            locks: Arc::default(),
            concurrency: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// Queues `work` for `key` and returns at once. It runs after any running work for `key`, unless
    /// newer work for `key` is queued before its turn (then it never runs).
    pub fn submit<F, Fut>(&self, key: K, work: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.latest).insert(key.clone(), generation);
        let key_lock = lock(&self.locks).entry(key.clone()).or_default().clone();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let counted = InFlight { count: self.in_flight.clone(), tasks: self.tasks.clone(), generation };
        let this = self.clone();
        let task = tokio::spawn(async move {
            let _counted = counted;
            let Ok(_permit) = this.concurrency.acquire().await else { return };
            let _guard = key_lock.lock().await;
            if lock(&this.latest).get(&key) != Some(&generation) {
                return; // superseded
            }
            // Boxed: the task is sized for the closure while it waits, not for the work's future.
            Box::pin(work()).await;
            let mut latest = lock(&this.latest);
            if latest.get(&key) == Some(&generation) {
                latest.remove(&key);
                drop(latest);
                lock(&this.locks).remove(&key);
            }
        });
        // Not under the lock while spawning: a runtime shutting down drops the task at once, and its
        // InFlight takes the lock. A task that ended before this line leaves no handle; one ending in
        // the instant between its drop and the check leaves a stale one, which `halt` aborts harmlessly.
        let mut tasks = lock(&self.tasks);
        if !task.is_finished() {
            tasks.insert(generation, task.abort_handle());
        }
    }

    /// Stops every queued and running piece of work at once, and takes no more: returns how many were
    /// stopped.
    pub fn halt(&self) -> usize {
        let stopped: Vec<AbortHandle> = lock(&self.tasks).drain().map(|(_, task)| task).collect();
        for task in &stopped {
            task.abort();
        }
        self.concurrency.close();
        stopped.len()
    }

    /// Waits (at most `timeout`) until all queued work has ended; returns how many are left.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.in_flight.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::sync::{Notify, mpsc};

    /// Work that reports `(key, n)` when it runs, after `gate` (if any) opens.
    fn job(
        done: &mpsc::UnboundedSender<(&'static str, u32)>,
        key: &'static str,
        n: u32,
        gate: Option<Arc<Notify>>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
        let done = done.clone();
        move || {
            Box::pin(async move {
                if let Some(g) = gate {
                    g.notified().await;
                }
                let _ = done.send((key, n));
            })
        }
    }

    #[tokio::test]
    async fn the_newest_work_for_a_key_supersedes_the_waiting_ones() {
        let keyed = Keyed::new(4);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        keyed.submit("a", job(&tx, "a", 1, Some(gate.clone())));
        tokio::time::sleep(Duration::from_millis(20)).await; // 1 is running, held by the gate
        for n in 2..=4 {
            keyed.submit("a", job(&tx, "a", n, None));
        }
        gate.notify_one();
        assert_eq!(keyed.drain(Duration::from_secs(5)).await, 0);
        drop(tx);
        let mut ran = Vec::new();
        while let Some(r) = rx.recv().await {
            ran.push(r);
        }
        assert_eq!(ran, [("a", 1), ("a", 4)], "the running one ends, then only the newest runs");
    }

    #[tokio::test]
    async fn other_keys_do_not_wait_for_a_busy_one() {
        let keyed = Keyed::new(4);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        keyed.submit("a", job(&tx, "a", 1, Some(gate.clone())));
        keyed.submit("b", job(&tx, "b", 1, None));
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap(), Some(("b", 1)));
        gate.notify_one();
        assert_eq!(rx.recv().await, Some(("a", 1)));
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let keyed = Keyed::new(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        keyed.submit("a", job(&tx, "a", 1, Some(gate.clone())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        keyed.submit("b", job(&tx, "b", 1, None));
        assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_err(), "b waits for a");
        gate.notify_one();
        assert_eq!(rx.recv().await, Some(("a", 1)));
        assert_eq!(rx.recv().await, Some(("b", 1)));
    }

    #[tokio::test]
    async fn a_task_is_forgotten_as_soon_as_it_ends() {
        let keyed = Keyed::new(2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        keyed.submit("a", job(&tx, "a", 1, Some(gate.clone())));
        for (key, n) in [("b", 1), ("c", 1), ("c", 2)] {
            keyed.submit(key, job(&tx, key, n, None));
        }
        assert_eq!(lock(&keyed.tasks).len(), 4, "every queued or running task is known (halt stops them)");
        for _ in 0..2 {
            rx.recv().await.unwrap();
        }
        assert_eq!(keyed.drain(Duration::from_millis(50)).await, 1, "only the gated one is left");
        assert_eq!(
            lock(&keyed.tasks).len(),
            1,
            "the ended and the superseded ones are gone, with no new submit"
        );
        gate.notify_one();
        assert_eq!(keyed.drain(Duration::from_secs(5)).await, 0);
        assert!(lock(&keyed.tasks).is_empty());
    }

    #[tokio::test]
    async fn halt_stops_everything_and_drain_counts_what_is_left() {
        let keyed = Keyed::new(4);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        keyed.submit("a", job(&tx, "a", 1, Some(gate.clone())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(keyed.drain(Duration::from_millis(50)).await, 1, "still running");
        assert_eq!(keyed.halt(), 1);
        keyed.submit("b", job(&tx, "b", 1, None));
        gate.notify_one();
        assert_eq!(keyed.drain(Duration::from_secs(5)).await, 0);
        drop(tx);
        assert_eq!(rx.recv().await, None, "nothing ran after or through the halt");
    }
}
