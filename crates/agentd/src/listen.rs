//! The HTTP server loop. `axum::serve` sets no timer, so a client that sends half a request
//! head holds its connection (and a file descriptor) forever, and it accepts without limit;
//! this loop serves each connection with hyper directly, bounding both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// How long a client has to send a whole request head, the first or the next on a kept-alive
    /// connection, before it is dropped.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a request's body may take to arrive, from the end of its head; `None` for no
    /// limit.
    pub body_timeout: Option<Duration>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections
/// in flight to finish their current response.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection holds a receiver; `closed` resolves once the last is gone.
    let (live_tx, live_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the cap, wait rather than accept and close: the kernel's listen backlog holds the
        // newcomers without spending a descriptor of ours, and they are served as soon as a
        // slot frees (the header timeout frees those held by clients that send nothing),
        // where a closed connection would be an error every client must retry.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Stream events go out as they happen; Nagle would hold small SSE frames back.
        let _ = tcp.set_nodelay(true);
        // The client's address keys the throttle on failed authentication.
        let body_timeout = limits.body_timeout;
        let svc = router
            .clone()
            .map_request(move |req: hyper::Request<Incoming>| {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(addr));
                // A request without a body (most: every GET) needs no deadline, nor its timer.
                let body = match body_timeout {
                    Some(limit) if !hyper::body::Body::is_end_stream(&body) => {
                        axum::body::Body::new(Deadline::new(body, limit))
                    }
                    _ => axum::body::Body::new(body),
                };
                hyper::Request::from_parts(parts, body)
            });
        let mut stop = stop_rx.clone();
        let live = live_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc));
            let mut conn = std::pin::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                tracing::debug!(client = %addr, error = %e, "connection ended");
            }
            drop((permit, live));
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(());
    drop(live_rx);
    live_tx.closed().await;
}

/// A request body that must have arrived whole within a time from the end of its head. The
/// header timeout bounds a client that trickles its head; without this, one that trickles a
/// body (a byte every few seconds of a declared megabyte) would hold its connection, and the
/// handler reading it, for as long as it liked. Past the deadline the read fails, the handler
/// answers 400, and hyper closes the connection, whose body was never read to its end.
struct Deadline<B> {
    inner: B,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> Deadline<B> {
    fn new(inner: B, limit: Duration) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> hyper::body::Body for Deadline<B>
where
    B: hyper::body::Body<Data = axum::body::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} s (--body-timeout-secs)",
                this.limit.as_secs()
            )
            .into()))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection reset before it was accepted costs nothing; anything else (above all
/// EMFILE, out of descriptors) would fail again at once, so the loop pauses instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Raises the soft limit on open files to the hard one, since every connection costs one, and
/// returns the soft limit then in force.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit"),
        }
    }
    soft
}

/// Descriptors kept back from connections for the database, sandboxes, model requests and logs.
const NOFILE_MARGIN: u64 = 256;

/// `wanted` connections, or fewer if the open-file limit could not hold them and the rest.
pub fn max_connections(wanted: usize, nofile: u64) -> usize {
    let room = usize::try_from(nofile.saturating_sub(NOFILE_MARGIN)).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(max_connections(4096, 1024), 768);
        assert_eq!(max_connections(4096, 1 << 20), 4096);
        assert_eq!(max_connections(4096, 100), 1);
    }
}
