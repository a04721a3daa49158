//! How many reconciles work at once, and in which order.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The reconciles allowed to work (read AWS, write Kubernetes) at once, in the order they
/// asked (fair semaphores).
///
/// kube-runtime's own limit holds the others back in an unordered set, from which an object
/// could be picked after newer ones for as long as the load lasts (tens of seconds at a
/// thousand objects). And an object whose package just changed in AWS (an import finished:
/// woken by its region's observer) has little left to do; it should not queue behind a
/// backlog of new objects: it may also take one of as many extra slots kept for such
/// objects. Reconciles with nothing to do (not yet due) take no slot.
pub struct Slots {
    work: Semaphore,
    changed: Semaphore,
}

impl Slots {
    pub fn new(concurrency: usize) -> Self {
        Self {
            work: Semaphore::new(concurrency),
            changed: Semaphore::new(concurrency),
        }
    }

    /// Waits for a slot (`woken`: an object whose package changed, which may take either
    /// kind); `None` once [`Self::close`] was called.
    pub(super) async fn acquire(&self, woken: bool) -> Option<SemaphorePermit<'_>> {
        if woken {
            tokio::select! {
                slot = self.work.acquire() => slot.ok(),
                slot = self.changed.acquire() => slot.ok(),
            }
        } else {
            self.work.acquire().await.ok()
        }
    }

    /// Shutting down: reconciles still waiting for a slot give up, those working finish.
    pub fn close(&self) {
        self.work.close();
        self.changed.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Lets spawned tasks run until they block.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn waiting_reconciles_get_slots_in_the_order_they_asked() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire(false).await.expect("a free slot");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for n in 0..5 {
            let (slots, order) = (slots.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _slot = slots.acquire(false).await.expect("a slot");
                order.lock().expect("not poisoned").push(n);
            }));
            // Each asks after the one before.
            settle().await;
        }
        drop(held);
        for task in waiting {
            task.await.expect("task ran");
        }
        assert_eq!(*order.lock().expect("not poisoned"), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn an_object_whose_package_changed_does_not_wait_behind_new_work() {
        let slots = Arc::new(Slots::new(2));
        let busy = [
            slots.acquire(false).await.expect("a free slot"),
            slots.acquire(false).await.expect("a free slot"),
        ];
        // New work waits for a work slot ...
        let new_work = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(false).await.map(drop) })
        };
        settle().await;
        assert!(!new_work.is_finished());
        // ... while woken objects take the slots kept for them, as many as the work slots.
        let woken = [
            slots
                .acquire(true)
                .await
                .expect("a slot for a changed package"),
            slots
                .acquire(true)
                .await
                .expect("a slot for a changed package"),
        ];
        let third = tokio::time::timeout(Duration::from_millis(100), slots.acquire(true)).await;
        assert!(third.is_err(), "only as many extra slots as work slots");
        drop(woken);
        drop(busy);
        assert_eq!(new_work.await.expect("task ran"), Some(()));
    }

    #[tokio::test]
    async fn closing_sends_waiting_reconciles_away_and_lets_working_ones_finish() {
        let slots = Arc::new(Slots::new(1));
        let working = slots.acquire(false).await.expect("a free slot");
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(false).await.is_some() })
        };
        settle().await;
        slots.close();
        assert!(
            !waiting.await.expect("task ran"),
            "a waiting reconcile gives up"
        );
        assert!(slots.acquire(true).await.is_none(), "no slot after closing");
        drop(working);
    }
}
