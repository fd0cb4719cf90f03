//! The HTTP listener's connection slots: at most `max_connections` at once. When every slot is
//! taken, a new client is served by closing the connection idle the longest (a keep-alive
//! connection between requests, no response streaming): idle clients never starve new ones.
//! A slot is given back when its connection ends, on every path (the guard is dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new client waits for the slot of the idle connection closed for it.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// The listener's slots.
#[derive(Debug)]
pub struct Slots {
    permits: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    /// Requests whose response has not been fully sent.
    active: AtomicUsize,
    /// When the last of them ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// Asked to close (it finishes what it is sending first).
    evicting: AtomicBool,
    /// Wakes the connection to close.
    pub evict: Notify,
}

/// A taken slot; given back on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<Slots>,
    id: u64,
    /// The connection's activity.
    pub activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// One request in progress on a connection, until its response body is dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// Marks a request in progress.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }
}

impl Slots {
    /// `max` slots.
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max.max(1))),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, or the slot of the longest-idle connection,
    /// closed for it. `None` when every connection is busy.
    pub async fn take(self: &Arc<Self>) -> Option<Slot> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(self.register(permit));
        }
        if !self.evict_one_idle() {
            return None;
        }
        match tokio::time::timeout(EVICTION_WAIT, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Some(self.register(permit)),
            _ => None,
        }
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Arc::clone(&activity));
        Slot { _permit: permit, slots: Arc::clone(self), id, activity }
    }

    /// Asks the connection idle the longest to close; whether there was one.
    fn evict_one_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = conns
            .values()
            .filter(|a| a.active.load(Ordering::Acquire) == 0 && !a.evicting.load(Ordering::Acquire))
            .min_by_key(|a| *a.idle_since.lock().unwrap_or_else(PoisonError::into_inner));
        match oldest {
            Some(a) => {
                a.evicting.store(true, Ordering::Release);
                a.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_closes_the_longest_idle_connection_and_never_a_busy_one() {
        let slots = Slots::new(2);
        let first = slots.take().await.unwrap();
        let second = slots.take().await.unwrap();
        let _busy = second.activity.begin();
        // The idle one is asked to close; its slot goes to the newcomer once it has.
        let asked = Arc::clone(&first.activity);
        let closer = tokio::spawn(async move {
            asked.evict.notified().await;
            drop(first);
        });
        let third = slots.take().await;
        assert!(third.is_some(), "the newcomer was turned away while a connection idled");
        closer.await.unwrap();
        // Now both connections are busy: a newcomer is turned away at once.
        let _also_busy = third.as_ref().unwrap().activity.begin();
        assert!(slots.take().await.is_none());
        drop(_busy);
        drop(second);
        assert!(slots.take().await.is_some(), "a slot given back is free again");
    }
}
