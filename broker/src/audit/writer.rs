//! The single audit writer task: group commit and checkpoint signing.

use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use verifier_lib::audit::{sign_checkpoint, Checkpoint, CheckpointSigner, Hash};

use super::{load_tree, AppendError, Msg, View};
use crate::clock::Clock;
use crate::store::audit::{Appended, CheckpointRow, PrepareEntry};
use crate::store::Store;

pub(super) struct Writer {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub signer: CheckpointSigner,
    pub view: Arc<RwLock<View>>,
    pub max_batch: usize,
    pub min_leaves: u64,
}

type Reply = oneshot::Sender<Result<Appended, AppendError>>;

pub(super) async fn run(w: Writer, mut rx: mpsc::Receiver<Msg>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let mut batch: Vec<(PrepareEntry, Reply)> = Vec::new();
                let mut checkpoint_requests = Vec::new();
                let mut next = Some(msg);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Append { prepare, reply } => batch.push((prepare, reply)),
                        Msg::Checkpoint { reply } => checkpoint_requests.push(reply),
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
                for reply in checkpoint_requests {
                    let _ = reply.send(w.checkpoint().await);
                }
            }
            _ = tick.tick() => {
                if w.unsigned_leaves() > 0 {
                    w.checkpoint_logged().await;
                }
            }
        }
    }
    tracing::info!("audit writer stopped");
}

impl Writer {
    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        match self.view.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
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

    /// Commits one batch, updates the tree, then answers every caller.
    async fn commit(&self, batch: Vec<(PrepareEntry, Reply)>) {
        let (prepares, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.store.append_audit_batch(prepares).await {
            Ok(results) => {
                let hashes: Vec<(u64, &Vec<Hash>)> = results
                    .iter()
                    .flatten()
                    .map(|a| (a.first_index, &a.leaf_hashes))
                    .collect();
                if !self.push(&hashes) {
                    // Another writer appended too (not possible with one
                    // process per SQLite file): reload what we missed.
                    self.resync().await;
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

    /// Pushes committed hashes if they extend the tree exactly.
    fn push(&self, entries: &[(u64, &Vec<Hash>)]) -> bool {
        let mut v = self.view_mut();
        for (first, hashes) in entries {
            if *first != v.tree.len() {
                return false;
            }
            for h in hashes.iter() {
                v.tree.push(*h);
            }
        }
        true
    }

    async fn resync(&self) {
        let current = self.view_mut().tree.len();
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

    /// Signs and stores a checkpoint of the current tree if it grew.
    async fn checkpoint(&self) -> Result<Option<CheckpointRow>, String> {
        let (size, root, latest) = {
            let v = self.view_mut();
            (v.tree.len(), v.tree.root(), v.latest.clone())
        };
        if latest.as_ref().is_some_and(|c| c.size == size) {
            return Ok(latest);
        }
        let cp = Checkpoint::new(self.signer.name(), size, root);
        let note = sign_checkpoint(&self.signer, &cp).map_err(|e| e.to_string())?;
        let row = CheckpointRow {
            size,
            note,
            created_at: self.clock.now(),
        };
        self.store
            .insert_audit_checkpoint(&row)
            .await
            .map_err(|e| e.to_string())?;
        self.view_mut().latest = Some(row.clone());
        Ok(Some(row))
    }
}
