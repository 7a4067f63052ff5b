//! The intake task: takes submitted events off the bounded queue, runs them through the planner
//! (hold, filters, batching), spools each ready batch durably and hands it to its lane.
//!
//! At shutdown it drains the queue, releases every held event (vacates are sent, not dropped: the
//! broker has stopped, so the channel really is empty) and spools every partial batch, then exits
//! without sending. This module must never send HTTP and never block the submit side: the queue is
//! the only link, and only this task reads it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::event::{unix_ms, WebhookEvent};
use crate::lane::Job;
use crate::plan::{Planner, ReadyBatch};
use crate::runtime::Shared;
use crate::spool::StoredBatch;

/// One submitted event, with its app's index.
#[derive(Debug)]
pub(crate) struct Submission {
    /// Index of the app in [`Shared::apps`] and in the planner's app list: resolved once by
    /// `submit`, so the intake task never looks an app up by its id string.
    pub app: usize,
    /// The fact the broker reported, with its id already assigned.
    pub event: WebhookEvent,
    /// Only cancel what is held for this event's channel (and user); send nothing
    /// (`Webhooks::cancel_held`).
    pub cancel_only: bool,
}

/// Submissions taken off the queue per wake-up.
/// Bounds the work done between two deadline checks, so a flood of submissions cannot delay a due
/// hold release by more than one chunk; large enough that one wake-up amortises the select.
const INTAKE_CHUNK: usize = 256;

/// Wait before trying again to spool batches after the spool failed (disk full, for example).
/// Long enough not to spin on a full disk, short enough that batches reach receivers soon after
/// the operator frees space.
const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// Runs until shutdown, then persists everything still in memory.
///
/// # The loop
/// Each turn waits for the first of three things: shutdown (checked first, `biased`), a chunk of up
/// to [`INTAKE_CHUNK`] submissions, or the next deadline, which is the earlier of the planner's (a
/// held vacate falling due, a batch window closing) and the spool retry. Then it releases due
/// holds, takes the batches that are ready and spools them in one transaction. A failed spool does
/// not lose batches: they wait in `unspooled` and go first into the next attempt, [`SPOOL_RETRY`]
/// later, so the order per app is kept.
///
/// # Shutdown
/// The queue is closed and drained, every held event is released (a vacate held at shutdown is
/// real: no subscriber can arrive on a stopped broker) and every open batch is closed early. These
/// are spooled but not dispatched; the next start sends them. Only if the spool fails here are
/// events lost, and then they are counted as dropped and logged.
pub(crate) async fn run_intake(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Submission>,
    mut planner: Planner,
) {
    let mut inbox = Vec::with_capacity(INTAKE_CHUNK);
    let mut unspooled: Vec<StoredBatch> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    loop {
        let wake = match (planner.next_deadline(), retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            n = rx.recv_many(&mut inbox, INTAKE_CHUNK) => {
                if n == 0 {
                    break; // every handle is gone
                }
                // Apps set before these events were submitted are planned before them.
                planner.sync(&shared);
                let now = Instant::now();
                let ms = unix_ms();
                for s in inbox.drain(..) {
                    if s.cancel_only {
                        planner.cancel_held(s.app, &s.event);
                    } else {
                        planner.submit(s.app, s.event, now, ms);
                    }
                }
            }
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
        planner.sync(&shared);
        let now = Instant::now();
        planner.release_due(now);
        let ready = planner.take_ready(now, false);
        let mut batches = stored(&shared, ready);
        if retry_at.is_some_and(|at| at <= now) {
            retry_at = None;
            batches.splice(0..0, unspooled.drain(..));
        }
        if batches.is_empty() {
            continue;
        }
        if let Err(failed) = spool(&shared, batches, true).await {
            unspooled.extend(failed);
            retry_at.get_or_insert(now + SPOOL_RETRY);
        }
    }

    // Shutdown: nothing accepted may stay only in memory.
    rx.close();
    planner.sync(&shared);
    let now = Instant::now();
    let ms = unix_ms();
    while let Ok(s) = rx.try_recv() {
        if s.cancel_only {
            planner.cancel_held(s.app, &s.event);
        } else {
            planner.submit(s.app, s.event, now, ms);
        }
    }
    planner.release_all(now);
    let mut batches = unspooled;
    let ready = planner.take_ready(now, true);
    batches.extend(stored(&shared, ready));
    if batches.is_empty() {
        return;
    }
    let count = batches.len();
    match spool(&shared, batches, false).await {
        Ok(()) => tracing::info!(batches = count, "webhook batches spooled at shutdown"),
        Err(lost) => {
            for batch in &lost {
                if let Some(app) = shared.app(&batch.app_id) {
                    app.counters
                        .dropped(u64::try_from(batch.events.len()).unwrap_or(u64::MAX));
                }
            }
            tracing::error!(
                batches = lost.len(),
                "the spool failed at shutdown: these webhook batches are lost"
            );
        }
    }
}

/// Turns ready batches into spool records, with their target's URL and headers.
/// The spool record carries the URL and headers, not the target's index, so a batch spooled before
/// a config change still goes where it was meant to go when it is replayed after a restart.
fn stored(shared: &Shared, ready: Vec<ReadyBatch>) -> Vec<StoredBatch> {
    let created_ms = unix_ms();
    ready
        .into_iter()
        .filter_map(|batch| {
            Some(StoredBatch {
                app_id: shared.app_id_at(batch.app)?,
                url: batch.to.url.clone(),
                headers: batch.to.headers.clone(),
                created_ms,
                events: batch.events,
            })
        })
        .collect()
}

/// Spools `batches` in one durable transaction and, with `dispatch`, hands each to its lane.
/// On failure the batches come back so the caller can try again.
/// The write runs on the blocking pool (redb fsyncs), tracked so shutdown waits for it. A batch is
/// dispatched only after its transaction committed: a lane never holds a job the spool does not,
/// which is what makes delivery at least once across a crash. A panicked write task returns an
/// empty `Err`, since the batches went down with it; that case is logged as a loss.
async fn spool(
    shared: &Arc<Shared>,
    batches: Vec<StoredBatch>,
    dispatch: bool,
) -> Result<(), Vec<StoredBatch>> {
    let Some(spool) = shared.spool() else {
        return Err(batches);
    };
    let written = shared
        .tracker
        .spawn_blocking(move || {
            let result = spool.insert(&batches);
            (batches, result)
        })
        .await;
    let (batches, keys) = match written {
        Ok((batches, Ok(keys))) => (batches, keys),
        Ok((batches, Err(e))) => {
            tracing::error!(error = %e, batches = batches.len(), "cannot spool webhook batches; will retry");
            return Err(batches);
        }
        Err(e) => {
            tracing::error!(error = %e, "the spool task failed; these webhook batches are lost");
            return Err(Vec::new());
        }
    };
    for (key, batch) in keys.into_iter().zip(batches) {
        let events = batch.events.len();
        if let Some(app) = shared.app(&batch.app_id) {
            app.counters
                .spooled(u64::try_from(events).unwrap_or(u64::MAX));
        }
        if dispatch {
            let batch = Arc::new(batch);
            let job = Job::new(key, &batch.app_id, events, Some(Arc::clone(&batch)));
            shared.dispatch(&batch.url, job);
        }
    }
    Ok(())
}
