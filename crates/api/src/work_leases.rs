//! Lost workers: a work item whose lease ran out goes back to the queue for another worker.
//! First the calls its worker had open are answered with an error result (the call may have
//! partly run; it is never run again silently), then the item is requeued under a new claim.
//! A lapse is final from the moment the lease runs out (`WorkItem::heartbeat` refuses a late
//! beat, `worker_results` a late answer), so nothing the lost worker sends after it counts. A
//! crash between the two steps repeats the first, which finds nothing left.
//!
//! A restart of agentd does not extend leases: a worker keeps its lease through a restart
//! shorter than its TTL (it beats at half the TTL and retries), and loses it otherwise, as
//! it would to any other outage. (Extending at every start let a crash-looping process keep
//! dead workers' leases alive.)

use std::time::Duration;

use crate::AppState;
use crate::worker_calls::{self, Closed};

/// How often leases are checked.
const EVERY: Duration = Duration::from_millis(500);

/// Check leases until the process ends.
pub async fn run(st: AppState) {
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
        let answered = worker_calls::close(st, &w.session_id, Closed::LeaseExpired).await?;
        let (_, requeued) = st
            .store
            .update_work(&w.id, Box::new(|i| i.requeue_lapsed(chrono::Utc::now())))
            .await?;
        if answered || requeued {
            st.runner.notify(&w.session_id);
        }
    }
    Ok(())
}
