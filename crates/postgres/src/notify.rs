//! Telling subscribers a log's new tail: after the commit by the appending process itself, and
//! through `LISTEN`/`NOTIFY` for appends other processes made. An append sends
//! `NOTIFY agentd_log, '<log id> <tail>'` inside its transaction, which PostgreSQL delivers only
//! once that transaction commits; a connection outside the pool listens and feeds the same
//! channels. Tails only move forward, whichever of the two reports first. When the listening
//! connection drops, notifications sent meanwhile are lost: on reconnecting, the tail of every
//! log subscribed to is read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, Notification};
use tokio_postgres_rustls::MakeRustlsConnect;

use deadpool_postgres::{GenericClient, Pool};

use agentd_session::Result;
use agentd_session::lease::Nudge;

use crate::pg;

const CHANNEL: &str = "agentd_log";
/// Where `agentd_session::lease::Nudge`s go: `'<kind> <log id>'`.
const NUDGES: &str = "agentd_nudge";

/// Nudge the owner of `log_id`, whichever process it is.
pub async fn nudge(c: &impl GenericClient, log_id: &str, nudge: Nudge) -> Result<()> {
    let payload = format!("{} {log_id}", nudge.as_str());
    c.execute("SELECT pg_notify($1, $2)", &[&NUDGES, &payload])
        .await
        .map_err(pg)?;
    Ok(())
}

fn payload(log_id: &str, tail: u64) -> String {
    format!("{log_id} {tail}")
}

/// Tell every process listening of each log's new tail, when the transaction `c` is in
/// commits (PostgreSQL holds a transaction's notifications until then, and drops them if it
/// rolls back).
pub async fn send(c: &impl GenericClient, tails: &[(String, u64)]) -> Result<()> {
    for (log, tail) in tails {
        c.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &payload(log, *tail)],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// The subscriptions of this process, and the task that listens for other processes' appends
/// (stopped when the last clone is dropped).
#[derive(Clone)]
pub struct Tails {
    tails: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    nudges: broadcast::Sender<(String, Nudge)>,
    /// Counts the reconnections of the listener: nudges sent meanwhile were lost.
    missed: watch::Sender<u64>,
    _listener: Arc<Listener>,
}

struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Tails {
    /// Start listening on a connection of its own; returns once `LISTEN` is in effect.
    pub async fn listen(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        pool: Pool,
    ) -> Result<Tails> {
        let tails: Arc<Mutex<HashMap<String, watch::Sender<u64>>>> = Arc::default();
        let nudges = broadcast::channel(1024).0;
        let missed = watch::channel(0).0;
        let first = listening(&config, &tls).await.map_err(pg)?;
        let task = tokio::spawn(relay(
            (config, tls),
            pool,
            Arc::clone(&tails),
            (nudges.clone(), missed.clone()),
            first,
        ));
        Ok(Tails {
            tails,
            nudges,
            missed,
            _listener: Arc::new(Listener(task)),
        })
    }

    pub fn nudges(&self) -> broadcast::Receiver<(String, Nudge)> {
        self.nudges.subscribe()
    }

    pub fn nudges_missed(&self) -> watch::Receiver<u64> {
        self.missed.subscribe()
    }

    pub fn subscribe(&self, log_id: &str) -> watch::Receiver<u64> {
        lock(&self.tails)
            .entry(log_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn notify(&self, log_id: &str, tail: u64) {
        notify(&self.tails, log_id, tail);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    }
}

fn notify(tails: &Mutex<HashMap<String, watch::Sender<u64>>>, log_id: &str, tail: u64) {
    let mut tails = lock(tails);
    if let Some(tx) = tails.get(log_id) {
        if tx.receiver_count() == 0 {
            tails.remove(log_id);
        } else {
            tx.send_if_modified(|t| {
                let moved = tail > *t;
                if moved {
                    *t = tail;
                }
                moved
            });
        }
    }
}

type Listening = (Client, mpsc::UnboundedReceiver<Notification>);

/// A connection that has run `LISTEN`, and the notifications it receives; the receiver ends
/// when the connection does.
async fn listening(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
) -> Result<Listening, tokio_postgres::Error> {
    let mut config = config.clone();
    // So an operator (or a test) can tell this connection from the pool's.
    config.application_name("agentd-listen");
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the LISTEN connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {NUDGES}"))
        .await?;
    Ok((client, rx))
}

/// Feed notifications to the subscribers, reconnecting when the connection drops.
async fn relay(
    (config, tls): (tokio_postgres::Config, MakeRustlsConnect),
    pool: Pool,
    tails: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    (nudges, missed): (broadcast::Sender<(String, Nudge)>, watch::Sender<u64>),
    mut current: Listening,
) {
    loop {
        while let Some(n) = current.1.recv().await {
            if n.channel() == NUDGES {
                match n
                    .payload()
                    .split_once(' ')
                    .and_then(|(kind, log)| Some((log.to_owned(), Nudge::parse(kind)?)))
                {
                    Some(nudge) => {
                        let _ = nudges.send(nudge);
                    }
                    None => tracing::warn!(payload = n.payload(), "an unknown nudge"),
                }
                continue;
            }
            let parsed = n
                .payload()
                .rsplit_once(' ')
                .and_then(|(log, tail)| Some((log, tail.parse::<u64>().ok()?)));
            match parsed {
                Some((log, tail)) => notify(&tails, log, tail),
                None => tracing::warn!(payload = n.payload(), "an unknown notification"),
            }
        }
        current = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match listening(&config, &tls).await {
                Ok(l) => break l,
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN again yet"),
            }
        };
        catch_up(&pool, &tails).await;
        missed.send_modify(|n| *n += 1);
    }
}

/// Tell every subscribed log's tail as it is now; a log whose session was deleted meanwhile
/// is reported deleted, as its notification would have said.
async fn catch_up(pool: &Pool, tails: &Mutex<HashMap<String, watch::Sender<u64>>>) {
    let logs: Vec<String> = lock(tails).keys().cloned().collect();
    for log in logs {
        match crate::log::tail(pool, &log).await {
            Ok(tail) => notify(tails, &log, tail),
            Err(agentd_session::Error::NotFound(_)) => {
                notify(tails, &log, agentd_session::DELETED);
            }
            Err(e) => tracing::warn!(error = %e, log, "cannot read a subscribed log's tail"),
        }
    }
}
