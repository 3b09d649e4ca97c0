//! Moves audit events from the [`Journal`] into the log store, where they become
//! searchable.
//!
//! Indexing an event costs the log store more than ten times what journaling it costs (see
//! docs/benchmarks.md, "Access control"), so it must not compete with requests for CPU:
//! each indexing pass runs on a thread of the lowest scheduling priority (`SCHED_IDLE`,
//! or `nice` 19 where that is refused). On an idle or moderately loaded machine that
//! changes nothing — events are searchable about
//! [`super::FLUSH_EVERY`] after the request; under a burst that saturates the CPU, indexing
//! waits and the journal holds the backlog. Once the backlog passes [`CATCH_UP_BYTES`],
//! passes run at normal priority, so sustained overload slows requests down rather than
//! growing the journal without bound. On shutdown the backlog is drained for at most
//! [`DRAIN_LIMIT`]; what is left is indexed at the next start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cattery_api::MANAGEMENT_CLUSTER_NAME;
use cattery_api::logs::{LogType, text_with_cluster};
use cattery_logstore::{IngestRecord, LogStoreError};
use serde_json::Value;

use super::journal::Journal;
use super::{FLUSH_EVERY, STREAM};
use crate::logs::{LogService, TailItem};

/// Journaled-but-unindexed bytes (≈ 400,000 events) above which indexing passes run at
/// normal priority instead of the lowest.
pub const CATCH_UP_BYTES: u64 = 256 << 20;
/// Longest time shutdown waits for the backlog to be indexed.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Most events stored in one commit (bigger batches index cheaper per event).
const BATCH_LINES: usize = 10_000;
const BATCH_BYTES: usize = 16 << 20;

/// Runs until `stopping` is set and the backlog is drained (or [`DRAIN_LIMIT`] passed).
pub(super) fn run(journal: &Journal, logs: &LogService, stopping: &AtomicBool) {
    let mut last_pass: Option<Instant> = None;
    let mut drain_deadline = None;
    let mut failures = 0u32;
    loop {
        let stop = stopping.load(Ordering::Acquire);
        let (events, bytes) = journal.backlog();
        if events == 0 {
            logs.metrics.audit_backlog(0);
        }
        if stop {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_LIMIT);
            if events == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "audit journal: {events} events are not indexed yet at shutdown; they are \
                     kept in the journal and indexed at the next start"
                );
                return;
            }
        } else if events == 0 {
            journal.wait_appended(FLUSH_EVERY);
            continue;
        } else if events < BATCH_LINES as u64
            && let Some(wait) = last_pass.and_then(|t| FLUSH_EVERY.checked_sub(t.elapsed()))
        {
            // Few events: wait for more, so a batch is not one commit per request.
            journal.wait_appended(wait);
            continue;
        }
        logs.metrics.audit_backlog(events);
        last_pass = Some(Instant::now());
        let background = !stop && bytes < CATCH_UP_BYTES;
        match pass_on_own_thread(journal, logs, background) {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::error!(
                    "audit journal: indexing failed ({e}); the events stay in the journal and \
                     are retried (attempt {failures})"
                );
                let backoff =
                    Duration::from_millis(100 << failures.min(8)).min(Duration::from_secs(10));
                std::thread::sleep(if stop {
                    backoff.min(Duration::from_secs(1))
                } else {
                    backoff
                });
            }
        }
    }
}

/// One pass on a fresh thread, so its priority (and that of the log store's indexing
/// threads, which its commit starts) can be lowered without affecting later passes: an
/// unprivileged thread cannot raise its priority again.
fn pass_on_own_thread(
    journal: &Journal,
    logs: &LogService,
    background: bool,
) -> Result<usize, String> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("audit-index".into())
            .spawn_scoped(s, || {
                if background {
                    lower_priority();
                }
                pass(journal, logs)
            })
            .map_err(|e| format!("starting an indexing thread: {e}"))?;
        handle
            .join()
            .map_err(|_| "the indexing thread panicked".to_string())?
    })
}

/// Puts the calling thread under `SCHED_IDLE` (it runs only when no other thread wants the
/// CPU), or at `nice` 19 where that is refused.
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_current_thread_priority, set_thread_priority_and_policy, thread_native_id,
    };
    let idle = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    );
    if let Err(e) = idle.or_else(|_| set_current_thread_priority(ThreadPriority::Min)) {
        tracing::debug!("audit journal: could not lower the indexing priority: {e:?}");
    }
}

/// Indexes the next batch of the journal and moves its cursor past it.
fn pass(journal: &Journal, logs: &LogService) -> Result<usize, String> {
    let Some(batch) = journal
        .read(BATCH_LINES, BATCH_BYTES)
        .map_err(|e| format!("reading the journal: {e}"))?
    else {
        return Ok(0);
    };
    let n = index_lines(logs, &batch.lines).map_err(|e| format!("storing: {e}"))?;
    journal
        .advance(batch.end)
        .map_err(|e| format!("saving the journal's progress: {e}"))?;
    Ok(n)
}

/// Stores journal lines (`(seq, JSON)`) as audit records of the management plane and
/// returns once they are durable; publishes them to live tails. A line that is not a
/// valid audit event (a damaged journal) is skipped with an error naming its sequence
/// number. Lines stored before (same seq) are recognised and stored once.
pub fn index_lines(logs: &LogService, lines: &[(u64, Vec<u8>)]) -> Result<usize, LogStoreError> {
    let mut records = Vec::with_capacity(lines.len());
    for (seq, line) in lines {
        let parsed = serde_json::from_slice::<Value>(line)
            .map_err(|e| e.to_string())
            .and_then(|mut record| {
                // The line is the event's text: stored as it is (with `cluster` added) rather
                // than serialised again, unless it names a cluster, which validation replaces.
                let source = record
                    .get("cluster")
                    .is_none()
                    .then(|| text_with_cluster(line, MANAGEMENT_CLUSTER_NAME))
                    .flatten();
                cattery_api::logs::validate(LogType::Audit, &mut record, MANAGEMENT_CLUSTER_NAME)
                    .map(|time_ms| (record, time_ms, source))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok((record, time_ms, source)) => records.push(IngestRecord {
                seq: *seq,
                log_type: LogType::Audit,
                time_ms,
                record,
                source,
            }),
            Err(e) => {
                logs.metrics
                    .rejected(LogType::Audit, MANAGEMENT_CLUSTER_NAME, 1);
                tracing::error!(
                    "audit journal: line with sequence number {seq} is not a valid audit event ({e}); skipped"
                );
            }
        }
    }
    let tail: Vec<Value> = if logs.has_subscribers() {
        records.iter().map(|r| r.record.clone()).collect()
    } else {
        vec![]
    };
    let report = logs
        .store
        .ingest(MANAGEMENT_CLUSTER_NAME, STREAM, records)?;
    logs.metrics.stored(
        LogType::Audit,
        MANAGEMENT_CLUSTER_NAME,
        report.stored as u64,
    );
    logs.publish(tail.into_iter().map(|record| TailItem {
        cluster: MANAGEMENT_CLUSTER_NAME.to_string(),
        log_type: LogType::Audit,
        record,
    }));
    Ok(report.stored)
}
