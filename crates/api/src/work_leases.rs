//! Lost workers: a work item whose lease ran out goes back to the queue for another worker.
//! First the calls its worker had open are answered with an error result (the call may have
//! partly run; it is never run again silently), then the item is requeued, which makes the lost
//! worker's secret stale: a late answer from it is refused, and the next worker finds nothing
//! open to rerun. A crash between the two steps repeats the first, which finds nothing left.

use std::time::Duration;

use agentd_session::{NewEvent, events};
use agentd_wire::{ContentBlock, EventBody};

use crate::AppState;

/// How often leases are checked.
const EVERY: Duration = Duration::from_millis(500);

/// Check leases until the process ends. At start, every held lease gets one more TTL: agentd
/// may have been down, and its workers could not heartbeat meanwhile.
pub async fn run(st: AppState) {
    let grace = chrono::Duration::seconds(i64::from(st.work.ttl_seconds));
    match st.store.live_work(None).await {
        Ok(items) => {
            for w in items {
                let now = chrono::Utc::now();
                if let Err(e) = st
                    .store
                    .update_work(&w.id, Box::new(move |i| i.extend_for_restart(now, grace)))
                    .await
                {
                    tracing::warn!(work = %w.id, error = %e, "could not extend a lease at start");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the work queue at start"),
    }
    loop {
        tokio::time::sleep(EVERY).await;
        if let Err(e) = sweep(&st).await {
            tracing::warn!(error = %e, "checking work leases failed");
        }
    }
}

/// Requeue every item whose lease lapsed, answering its worker's open calls first.
pub async fn sweep(st: &AppState) -> Result<(), agentd_catalog::Error> {
    let now = chrono::Utc::now();
    for w in st.store.live_work(None).await? {
        if !w.lease_lapsed(now) {
            continue;
        }
        tracing::warn!(work = %w.id, session = %w.session_id, "a worker's lease lapsed; requeueing its work");
        for call in open_calls(st, &w.session_id).await? {
            let answer = NewEvent::new(EventBody::UserToolResult {
                tool_use_id: call,
                content: Some(vec![ContentBlock::text(
                    "The worker running this call stopped answering (its lease expired), so the call may have partly run. Check the state it would have changed before trying it again.",
                )]),
                is_error: Some(true),
                session_thread_id: None,
            });
            match st.store.append(&w.session_id, events(vec![answer])).await {
                // Answered meanwhile (the worker's last word, or another process's sweep).
                Ok(_) | Err(agentd_session::Error::Refused(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (_, requeued) = st
            .store
            .update_work(&w.id, Box::new(|i| i.requeue_lapsed(chrono::Utc::now())))
            .await?;
        if requeued {
            st.runner.notify(&w.session_id);
        }
    }
    Ok(())
}

/// The session's open built-in calls a worker runs, as the harness's fold sees them.
async fn open_calls(st: &AppState, sid: &str) -> Result<Vec<String>, agentd_catalog::Error> {
    let mut log = Vec::new();
    loop {
        let after = log
            .last()
            .map_or(0, |e: &agentd_session::StoredEvent| e.seq);
        let page = st.store.read(sid, after, 1000).await?;
        let n = page.len();
        log.extend(page);
        if n < 1000 {
            break;
        }
    }
    let f = agentd_brain::context::fold(&log);
    Ok(match f.next {
        agentd_brain::context::Next::RunTools(work) => work
            .into_iter()
            .filter(|w| w.action == agentd_brain::context::ToolAction::Run && w.name.in_sandbox())
            .map(|w| w.id)
            .collect(),
        _ => Vec::new(),
    })
}
