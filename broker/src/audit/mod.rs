//! The broker's signed Merkle audit log (docs/audit.md).
//!
//! Every decision appends leaves through [`AuditLog`]. One writer task owns
//! appends: it takes every request waiting in its queue (up to
//! `audit.max_batch`), commits them in ONE database transaction together
//! with the state changes they record (group commit), updates the in-memory
//! [`MerkleTree`] used for proofs, and only then answers each caller. So an
//! API answer (a token, a nonce, an enrollment) always follows the commit of
//! its leaf, and a state change never exists without its leaf.
//!
//! The writer also signs C2SP checkpoints with the checkpoint key: every
//! `audit.checkpoint_interval_secs` when the log grew, and right after a
//! batch once `audit.checkpoint_min_leaves` leaves were appended since the
//! last one. All checkpoints are kept in the store.
//!
//! Several brokers may append to one log (PostgreSQL): the store serializes
//! their appends, and each writer keeps its tree equal to a prefix of the
//! stored log. Before placing its own leaves it loads the ones other brokers
//! committed below them; every `audit.follow_interval_ms` (and when a reader
//! asks for an index beyond it) it loads what they appended since. It signs
//! a checkpoint only under the log's write lock, after loading the last
//! stored leaves, so the signed size and root are those of the stored rows.
//! Each broker signs with its own key, published in the store's key table
//! (`audit_keys`) at start; each checkpoint row names the key that signed it.

pub mod key;
pub mod key_set;
pub mod leaves;
pub mod policy;
pub mod refusals;
pub mod source;
mod writer;

use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{mpsc, oneshot};
use verifier_lib::audit::{open_checkpoint, CheckpointSigner, Leaf, MerkleTree};

use crate::clock::Clock;
use crate::config::AuditConfig;
use crate::store::audit::{
    Appended, AuditKeyRecord, CheckpointRow, Entry, EntryError, PrepareEntry, StateChange,
};
use crate::store::{Store, StoreError};

/// Rows fetched per query when loading the tree at start-up.
const LOAD_PAGE: u32 = 100_000;
/// Queue length in front of the writer (back-pressure beyond it).
const QUEUE: usize = 8192;

/// Why a decision could not be logged (and so was not taken).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("the audit writer has stopped")]
    WriterGone,
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("audit batch was not committed: {0}")]
    Commit(String),
}

/// Why the audit log could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditStartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] key::CheckpointKeyError),
    #[error(
        "audit log: row at position {expected} has index {actual}; run `writ-broker audit verify`"
    )]
    IndexGap { expected: u64, actual: u64 },
    #[error("audit log: the newest checkpoint does not match the stored log ({reason}); run `writ-broker audit verify`")]
    CheckpointMismatch { reason: String },
    #[error("audit log: its checkpoints have origin {actual:?} but this broker's is {expected:?}; every broker on one database needs the same audit.origin")]
    OriginMismatch { expected: String, actual: String },
    #[error("audit log: the newest checkpoint is signed by key {key_id}, which is not published in the store's audit key table")]
    UnknownKey { key_id: String },
    #[error("audit log: the checkpoint key's verifier key does not parse")]
    KeyId,
}

/// Where the log reports what its appends cost (Prometheus histograms the
/// broker's metrics register; `AuditInstruments::none()` reports nowhere).
#[derive(Clone)]
pub struct AuditInstruments {
    /// Entries (decisions) committed per batch transaction.
    pub batch_entries: metrics::Histogram,
    /// Seconds from queueing an entry to its answer (queue wait and the
    /// batch's commit), per entry.
    pub append_seconds: metrics::Histogram,
}

impl AuditInstruments {
    pub fn none() -> AuditInstruments {
        AuditInstruments {
            batch_entries: metrics::Histogram::noop(),
            append_seconds: metrics::Histogram::noop(),
        }
    }
}

impl std::fmt::Debug for AuditInstruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditInstruments").finish_non_exhaustive()
    }
}

/// What readers (the API) see: the tree of committed leaves and the newest
/// signed checkpoint.
#[derive(Debug)]
pub struct View {
    pub tree: MerkleTree,
    pub latest: Option<CheckpointRow>,
}

enum Msg {
    Append {
        prepare: PrepareEntry,
        reply: oneshot::Sender<Result<Appended, AppendError>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<Option<CheckpointRow>, String>>,
    },
    /// Load the leaves other brokers appended; answers the tree size.
    Follow { reply: oneshot::Sender<u64> },
}

struct Inner {
    queue: mpsc::Sender<Msg>,
    append_seconds: metrics::Histogram,
    view: Arc<RwLock<View>>,
    origin: String,
    vkey: String,
    key_id: String,
}

/// Handle to the audit log (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log (loading the tree and checking it against the newest
    /// checkpoint, whichever broker signed it), publishes this broker's
    /// checkpoint verifier key in the store under `broker` (its name), and
    /// starts the writer task on the current runtime; appends are reported
    /// to `instruments`.
    pub async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        signer: CheckpointSigner,
        config: &AuditConfig,
        broker: &str,
        instruments: AuditInstruments,
    ) -> Result<AuditLog, AuditStartError> {
        let tree = load_tree(&store).await?;
        let origin = signer.name().to_owned();
        let vkey = signer.vkey();
        let key_id = key::key_id_of_vkey(&vkey).ok_or(AuditStartError::KeyId)?;
        store
            .register_audit_key(&AuditKeyRecord {
                key_id: key_id.clone(),
                vkey: vkey.clone(),
                broker: broker.to_owned(),
                added_at: clock.now(),
                retired_at: None,
            })
            .await?;
        if let Some(newest) = store.latest_audit_checkpoint().await? {
            let keys = store.audit_keys().await?;
            let signed_by = keys
                .iter()
                .find(|k| k.key_id == newest.key_id)
                .ok_or_else(|| AuditStartError::UnknownKey {
                    key_id: newest.key_id.clone(),
                })?;
            check_checkpoint(&tree, &newest, &signed_by.vkey, &origin)?;
        }
        // This broker's own newest checkpoint (what it serves and proves to).
        let latest = store
            .latest_audit_checkpoint_of(&key_id)
            .await?
            .filter(|c| c.key_id == key_id);
        if let Some(cp) = &latest {
            check_checkpoint(&tree, cp, &vkey, &origin)?;
        }
        tracing::info!(size = tree.len(), origin = %origin, key_id = %key_id, broker, "audit log opened");
        let view = Arc::new(RwLock::new(View { tree, latest }));
        let (tx, rx) = mpsc::channel(QUEUE);
        let w = writer::Writer {
            store,
            clock,
            signer: Arc::new(signer),
            key_id: key_id.clone(),
            view: Arc::clone(&view),
            max_batch: config.max_batch,
            min_leaves: config.checkpoint_min_leaves,
            batch_entries: instruments.batch_entries,
        };
        let interval = std::time::Duration::from_secs(config.checkpoint_interval_secs.max(1));
        let follow = (config.follow_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(config.follow_interval_ms));
        tokio::spawn(writer::run(w, rx, interval, follow));
        Ok(AuditLog {
            inner: Arc::new(Inner {
                queue: tx,
                append_seconds: instruments.append_seconds,
                view,
                origin,
                vkey,
                key_id,
            }),
        })
    }

    /// The log's origin (first checkpoint line, checkpoint key name).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Whether the writer task still takes appends (`/readyz`).
    pub fn writer_alive(&self) -> bool {
        !self.inner.queue.is_closed()
    }

    /// The checkpoint verifier key (signed-note vkey text).
    pub fn vkey(&self) -> &str {
        &self.inner.vkey
    }

    /// The checkpoint key's id (`<key name>+<8 hex key hash>`), as named by
    /// the notes it signs and in the store's key table.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// Loads the leaves other brokers appended since the last catch-up;
    /// returns the tree's size after it.
    pub async fn follow(&self) -> Result<u64, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Msg::Follow { reply })
            .await
            .map_err(|_| AppendError::WriterGone)?;
        answer.await.map_err(|_| AppendError::WriterGone)
    }

    /// The tree size, after catching up with the stored log first when
    /// `wanted` is not below it (a reader asks for a leaf or size another
    /// broker may have appended).
    pub async fn size_covering(&self, wanted: u64) -> Result<u64, AppendError> {
        let size = self.view().tree.len();
        if wanted < size {
            return Ok(size);
        }
        self.follow().await
    }

    /// Read access to the committed tree and newest checkpoint. Keep the
    /// guard short: the writer needs the lock after each commit.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        match self.inner.view.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Logs `leaves` with `change` in one transaction; returns the index of
    /// the first leaf once committed.
    pub async fn append(&self, change: StateChange, leaves: Vec<Leaf>) -> Result<u64, AppendError> {
        let entry = Entry { change, leaves };
        let (index, ()) = self.append_with(move |_| Ok((entry, ()))).await?;
        Ok(index)
    }

    /// Like [`Self::append`], but the entry is built inside the write
    /// transaction from the index its first leaf will get (e.g. to mint a
    /// token carrying its own `audit_index`). `build` must be quick. Its
    /// extra output is handed back only once the entry is committed.
    pub async fn append_with<T, F>(&self, build: F) -> Result<(u64, T), AppendError>
    where
        T: Send + 'static,
        F: FnOnce(u64) -> Result<(Entry, T), EntryError> + Send + 'static,
    {
        let (appended, extra) = self.commit_with(build).await?;
        Ok((appended.first_index, extra))
    }

    /// Applies `change` with its `leaves` in one transaction. Returns where
    /// the leaves went and how many tokens the change revoked; a change that
    /// does not apply is `AppendError::Entry(EntryError::Refused(_))`, and
    /// then nothing was written.
    pub async fn apply(
        &self,
        change: StateChange,
        leaves: Vec<Leaf>,
    ) -> Result<Appended, AppendError> {
        let entry = Entry { change, leaves };
        let (appended, ()) = self.commit_with(move |_| Ok((entry, ()))).await?;
        Ok(appended)
    }

    /// [`Self::append_with`], handing back the whole [`Appended`].
    pub async fn commit_with<T, F>(&self, build: F) -> Result<(Appended, T), AppendError>
    where
        T: Send + 'static,
        F: FnOnce(u64) -> Result<(Entry, T), EntryError> + Send + 'static,
    {
        let slot: Arc<std::sync::Mutex<Option<T>>> = Arc::new(std::sync::Mutex::new(None));
        let out = Arc::clone(&slot);
        let prepare: PrepareEntry = Box::new(move |index| {
            let (entry, extra) = build(index)?;
            match out.lock() {
                Ok(mut g) => *g = Some(extra),
                Err(p) => *p.into_inner() = Some(extra),
            }
            Ok(entry)
        });
        let (reply, answer) = oneshot::channel();
        let queued = std::time::Instant::now();
        self.inner
            .queue
            .send(Msg::Append { prepare, reply })
            .await
            .map_err(|_| AppendError::WriterGone)?;
        let answered = answer.await.map_err(|_| AppendError::WriterGone)?;
        self.inner
            .append_seconds
            .record(queued.elapsed().as_secs_f64());
        let appended = answered?;
        let extra = match slot.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let extra = extra.ok_or_else(|| AppendError::Commit("entry output missing".into()))?;
        Ok((appended, extra))
    }

    /// Signs a checkpoint of the current tree now if it grew since the last
    /// one; returns the newest checkpoint.
    pub async fn checkpoint_now(&self) -> Result<Option<CheckpointRow>, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Msg::Checkpoint { reply })
            .await
            .map_err(|_| AppendError::WriterGone)?;
        answer
            .await
            .map_err(|_| AppendError::WriterGone)?
            .map_err(AppendError::Commit)
    }
}

async fn load_tree(store: &Store) -> Result<MerkleTree, AuditStartError> {
    let mut tree = MerkleTree::new();
    loop {
        let page = store.audit_leaf_hashes(tree.len(), LOAD_PAGE).await?;
        if page.is_empty() {
            return Ok(tree);
        }
        for (index, h) in page {
            if index != tree.len() {
                return Err(AuditStartError::IndexGap {
                    expected: tree.len(),
                    actual: index,
                });
            }
            tree.push(h);
        }
    }
}

fn check_checkpoint(
    tree: &MerkleTree,
    cp: &CheckpointRow,
    vkey: &str,
    origin: &str,
) -> Result<(), AuditStartError> {
    let mismatch = |reason: String| AuditStartError::CheckpointMismatch { reason };
    let parsed = open_checkpoint(&cp.note, vkey).map_err(|e| mismatch(e.to_string()))?;
    if parsed.origin != origin {
        return Err(AuditStartError::OriginMismatch {
            expected: origin.to_owned(),
            actual: parsed.origin,
        });
    }
    if parsed.size != cp.size {
        return Err(mismatch(format!(
            "row size {} but note size {}",
            cp.size, parsed.size
        )));
    }
    let root = tree
        .root_at(parsed.size)
        .map_err(|e| mismatch(e.to_string()))?;
    if root != parsed.root {
        return Err(mismatch(format!("root at size {} differs", parsed.size)));
    }
    Ok(())
}
