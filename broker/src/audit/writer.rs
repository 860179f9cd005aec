//! The single audit writer task of a broker: group commit, following the
//! stored log (other brokers' appends) and checkpoint signing.

use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use verifier_lib::audit::{sign_checkpoint, Checkpoint, CheckpointSigner, Hash};

use super::{load_tree, AppendError, Msg, View};
use crate::clock::Clock;
use crate::store::audit::{Appended, CheckpointError, CheckpointRow, PrepareEntry};
use crate::store::Store;

/// Leaf hashes fetched per query when following the stored log.
const FOLLOW_PAGE: u32 = 10_000;

pub(super) struct Writer {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub signer: Arc<CheckpointSigner>,
    pub key_id: String,
    pub view: Arc<RwLock<View>>,
    pub max_batch: usize,
    pub min_leaves: u64,
    /// Entries per committed batch (`writ_audit_batch_entries`).
    pub batch_entries: metrics::Histogram,
}

type Reply = oneshot::Sender<Result<Appended, AppendError>>;

pub(super) async fn run(
    w: Writer,
    mut rx: mpsc::Receiver<Msg>,
    interval: Duration,
    follow: Option<Duration>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follow_tick = follow.map(tokio::time::interval);
    if let Some(t) = follow_tick.as_mut() {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let follow_due = async {
            match follow_tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let mut batch: Vec<(PrepareEntry, Reply)> = Vec::new();
                let mut checkpoint_requests = Vec::new();
                let mut follow_requests = Vec::new();
                let mut next = Some(msg);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Append { prepare, reply } => batch.push((prepare, reply)),
                        Msg::Checkpoint { reply } => checkpoint_requests.push(reply),
                        Msg::Follow { reply } => follow_requests.push(reply),
                    }
                    if batch.len() < w.max_batch {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    w.commit(batch).await;
                    if w.unsigned_leaves() >= w.min_leaves {
                        w.checkpoint_logged().await;
                    }
                }
                if !follow_requests.is_empty() {
                    w.follow().await;
                    let size = w.size();
                    for reply in follow_requests {
                        let _ = reply.send(size);
                    }
                }
                for reply in checkpoint_requests {
                    let _ = reply.send(w.checkpoint().await.map_err(|e| e.to_string()));
                }
            }
            _ = tick.tick() => {
                w.follow().await;
                if w.unsigned_leaves() > 0 {
                    w.checkpoint_logged().await;
                }
            }
            () = follow_due => {
                w.follow().await;
            }
        }
    }
    tracing::info!("audit writer stopped");
}

/// Why hashes could not be placed in the tree.
#[derive(Debug)]
struct Misplaced {
    index: u64,
    tree_size: u64,
}

/// Appends `(index, hash)` pairs that continue `view`'s tree exactly; a
/// pair at an index the tree already holds must carry the same hash. Stops
/// at the first pair that does not fit, leaving the tree as far as it got.
fn place(view: &mut View, entries: impl IntoIterator<Item = (u64, Hash)>) -> Result<(), Misplaced> {
    for (index, h) in entries {
        let size = view.tree.len();
        if index == size {
            view.tree.push(h);
        } else if index > size || view.tree.leaf(index) != Some(h) {
            return Err(Misplaced {
                index,
                tree_size: size,
            });
        }
    }
    Ok(())
}

impl Writer {
    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        match self.view.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn size(&self) -> u64 {
        match self.view.read() {
            Ok(g) => g.tree.len(),
            Err(poisoned) => poisoned.into_inner().tree.len(),
        }
    }

    fn unsigned_leaves(&self) -> u64 {
        let v = match self.view.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        v.tree
            .len()
            .saturating_sub(v.latest.as_ref().map_or(0, |c| c.size))
    }

    /// Commits one batch, brings the tree to it (loading what other
    /// brokers appended below it first), then answers every caller.
    async fn commit(&self, batch: Vec<(PrepareEntry, Reply)>) {
        let (prepares, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let entries = prepares.len();
        match self.store.append_audit_batch(prepares).await {
            Ok(results) => {
                self.batch_entries.record(entries as f64);
                for a in results.iter().flatten() {
                    if !self.place_committed(a).await {
                        self.resync().await;
                        break;
                    }
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(AppendError::Entry));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit batch not committed; every decision in it is refused");
                self.resync().await;
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Commit(e.to_string())));
                }
            }
        }
    }

    /// Places one committed entry: first the stored leaves below it that
    /// the tree lacks (appended by other brokers), then its own.
    async fn place_committed(&self, a: &Appended) -> bool {
        while self.size() < a.first_index {
            let size = self.size();
            let missing = u32::try_from(a.first_index - size).unwrap_or(u32::MAX);
            let page = match self
                .store
                .audit_leaf_hashes(size, missing.min(FOLLOW_PAGE))
                .await
            {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => {
                    tracing::error!(
                        first_index = a.first_index,
                        tree_size = size,
                        "audit log: the leaves below a committed entry are not in the store"
                    );
                    return false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit log: loading other brokers' leaves failed");
                    return false;
                }
            };
            let below = page.into_iter().filter(|(i, _)| *i < a.first_index);
            let placed = place(&mut self.view_mut(), below);
            if let Err(m) = placed {
                tracing::error!(
                    index = m.index,
                    tree_size = m.tree_size,
                    "audit log: a stored leaf does not continue the tree; reloading it"
                );
                return false;
            }
        }
        let own = (a.first_index..).zip(a.leaf_hashes.iter().copied());
        let placed = place(&mut self.view_mut(), own);
        match placed {
            Ok(()) => true,
            Err(m) => {
                tracing::error!(
                    index = m.index,
                    tree_size = m.tree_size,
                    "audit log: a committed leaf is not where the tree expects it; reloading it"
                );
                false
            }
        }
    }

    /// Loads every leaf stored beyond the tree (appended by other brokers).
    async fn follow(&self) {
        loop {
            let size = self.size();
            let page = match self.store.audit_leaf_hashes(size, FOLLOW_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "audit log: following the stored log failed");
                    return;
                }
            };
            let full = page.len() >= usize::try_from(FOLLOW_PAGE).unwrap_or(usize::MAX);
            if page.is_empty() {
                return;
            }
            let placed = place(&mut self.view_mut(), page);
            if let Err(m) = placed {
                tracing::error!(
                    index = m.index,
                    tree_size = m.tree_size,
                    "audit log: a stored leaf does not continue the tree; reloading it"
                );
                self.resync().await;
                return;
            }
            if !full {
                return;
            }
        }
    }

    /// Reloads the whole tree from the store (the store is the truth).
    async fn resync(&self) {
        let current = self.size();
        match load_tree(&self.store).await {
            Ok(tree) if tree.len() >= current => {
                self.view_mut().tree = tree;
            }
            Ok(tree) => {
                tracing::error!(
                    stored = tree.len(),
                    in_memory = current,
                    "audit log shrank in the database; keeping the in-memory tree"
                );
            }
            Err(e) => tracing::error!(error = %e, "reloading the audit tree failed"),
        }
    }

    async fn checkpoint_logged(&self) {
        if let Err(e) = self.checkpoint().await {
            tracing::error!(error = %e, "signing an audit checkpoint failed");
        }
    }

    /// Signs and stores a checkpoint of the stored log if it grew since
    /// this broker's last one. Under the log's write lock the tree takes
    /// the last stored leaves, so the signed size and root are those of
    /// the stored rows `0..size`.
    async fn checkpoint(&self) -> Result<Option<CheckpointRow>, CheckpointError> {
        // Most of the catching up outside the lock.
        self.follow().await;
        let view = Arc::clone(&self.view);
        let signer = Arc::clone(&self.signer);
        let key_id = self.key_id.clone();
        let now = self.clock.now();
        let from = self.size();
        let sign = Box::new(move |stored: Vec<(u64, Hash)>| {
            let mut v = match view.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            place(&mut v, stored).map_err(|m| CheckpointError::NotContiguous {
                expected: m.tree_size,
                actual: m.index,
            })?;
            let size = v.tree.len();
            if v.latest.as_ref().is_some_and(|c| c.size >= size) {
                return Ok(None);
            }
            let cp = Checkpoint::new(signer.name(), size, v.tree.root());
            let note = sign_checkpoint(&signer, &cp).map_err(CheckpointError::Sign)?;
            Ok(Some(CheckpointRow {
                size,
                note,
                created_at: now,
                key_id,
            }))
        });
        match self.store.sign_audit_checkpoint(from, sign).await {
            Ok(Some(row)) => {
                self.view_mut().latest = Some(row.clone());
                Ok(Some(row))
            }
            Ok(None) => Ok(self.view_mut().latest.clone()),
            Err(e @ CheckpointError::NotContiguous { .. }) => {
                self.resync().await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier_lib::audit::MerkleTree;

    fn view(n: u8) -> View {
        let mut tree = MerkleTree::new();
        for i in 0..n {
            tree.push([i; 32]);
        }
        View { tree, latest: None }
    }

    #[test]
    fn hashes_are_placed_only_where_they_continue_the_tree() {
        let mut v = view(3);
        // Already held, same hash: accepted; then extended.
        place(&mut v, [(2, [2; 32]), (3, [3; 32])]).unwrap();
        assert_eq!(v.tree.len(), 4);
        // A gap is refused, nothing pushed past it.
        let m = place(&mut v, [(5, [5; 32])]).unwrap_err();
        assert_eq!((m.index, m.tree_size), (5, 4));
        assert_eq!(v.tree.len(), 4);
        // A different hash at a held position is refused.
        let m = place(&mut v, [(1, [9; 32])]).unwrap_err();
        assert_eq!((m.index, m.tree_size), (1, 4));
        assert_eq!(v.tree.leaf(1), Some([1; 32]));
    }
}
