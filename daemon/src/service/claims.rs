//! Claims: how a transition takes an id (an approval, an action) for itself. Others wanting the
//! same id wait; the [`Claim`] guard gives the id back when it is dropped, on every path (a
//! returned error, a panic, a dropped future). Every transition runs in a task of its own
//! ([`detached`]): a caller that goes away (an HTTP client that disconnects) drops only its wait
//! for the answer, never a commit half done, so memory and the log cannot disagree.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::ServiceError;

/// The ids claimed now.
#[derive(Debug, Default)]
pub struct Claims {
    busy: Mutex<HashSet<String>>,
    freed: Notify,
}

impl Claims {
    /// Takes `id`, waiting while another claim holds it.
    pub async fn claim(self: &Arc<Self>, id: &str) -> Claim {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.busy.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned()) {
                return Claim { claims: Arc::clone(self), id: id.to_owned() };
            }
            freed.await;
        }
    }

    /// Whether `id` is claimed now.
    #[cfg(test)]
    fn is_claimed(&self, id: &str) -> bool {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner).contains(id)
    }
}

/// A claimed id, given back on drop.
#[derive(Debug)]
pub struct Claim {
    claims: Arc<Claims>,
    id: String,
}

impl Claim {
    /// The claimed id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.busy.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        self.claims.freed.notify_waiters();
    }
}

/// Starts `work` at once in a task of its own (it runs to completion) and returns the wait for
/// its outcome: dropping the returned future stops the wait, not the work. Called from within
/// the runtime.
pub fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> impl Future<Output = Result<T, ServiceError>> + Send {
    let task = tokio::spawn(work);
    async move {
        task.await.map_err(|e| ServiceError::internal(format!("the transition failed: {e}")).caused_by(e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_claimer_gives_its_claim_back() {
        let claims = Arc::new(Claims::default());
        // A future that claims and is dropped mid-way (as an HTTP handler whose client left).
        let c = Arc::clone(&claims);
        let held = tokio::spawn(async move {
            let _claim = c.claim("a").await;
            std::future::pending::<()>().await;
        });
        while !claims.is_claimed("a") {
            tokio::task::yield_now().await;
        }
        held.abort();
        let _ = held.await;
        assert!(!claims.is_claimed("a"), "the claim outlived its future");
        // A waiter gets it once the holder lets go.
        let first = claims.claim("b").await;
        let c = Arc::clone(&claims);
        let waiter = tokio::spawn(async move { c.claim("b").await.id().to_owned() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        assert_eq!(waiter.await.unwrap(), "b");
    }

    #[tokio::test]
    async fn detached_work_finishes_when_its_caller_is_gone() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wait = detached(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(42);
            Ok(())
        });
        // The caller drops its future before the work ran.
        drop(wait);
        assert_eq!(rx.await.unwrap(), 42);
    }
}
