//! The one loopback HTTP/1 accept loop: the gateway, the receiver and the
//! test kit's fakes all serve through it.
//!
//! [`serve_until`] accepts connections until a shutdown future completes,
//! passes each stream through an accept step (plain, or a TLS handshake),
//! answers its requests in a task of its own, and on shutdown lets busy
//! connections finish (at most [`SHUTDOWN_GRACE`]). Dropping the serving
//! future closes every connection at once. [`Background`] runs a server on
//! the caller's runtime or on one of its own.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::{Future, Ready};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long busy connections may take to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The accept step of a plain HTTP server: the TCP stream as it is.
pub fn plain(stream: TcpStream) -> Ready<io::Result<TcpStream>> {
    std::future::ready(Ok(stream))
}

/// Answers every request on `listener` with `handler(state, request)`,
/// one task per connection, until the listener fails or this future is
/// dropped (for example because the task running it is aborted), which
/// also closes every open connection.
pub async fn serve<S, F, Fut>(listener: TcpListener, state: Arc<S>, handler: F)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let handler = move |state, req| {
        let answer = handler(state, req);
        async move { Ok::<_, Infallible>(answer.await) }
    };
    let _ = serve_until(listener, plain, state, handler, std::future::pending()).await;
}

/// Answers every request on `listener` until `shutdown` completes: then
/// idle connections close at once and busy ones after their response, at
/// most [`SHUTDOWN_GRACE`] later. Each accepted TCP stream first goes
/// through `accept` (a TLS handshake, say; run in the connection's task, a
/// failure drops the connection), and `handler` may fail, in which case
/// hyper closes the connection without writing a response. Fails only if
/// accepting a connection fails.
pub async fn serve_until<A, AFut, IO, S, F, Fut, E>(
    listener: TcpListener,
    accept: A,
    state: Arc<S>,
    handler: F,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    A: Fn(TcpStream) -> AFut,
    AFut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>> + 'static,
{
    let (stop, stopped) = watch::channel(());
    // Dropping the set aborts the connection tasks, so a dropped server
    // stops answering on kept-alive and hanging connections too.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let result = loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => break Err(e),
            },
            () = &mut shutdown => break Ok(()),
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let handshake = accept(stream);
        let state = Arc::clone(&state);
        let handler = handler.clone();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let Ok(io) = handshake.await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handler(Arc::clone(&state), req));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    };
    drop(listener);
    stop.send_replace(());
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        connections.abort_all();
    }
    result
}

/// A server running in the background, on the caller's runtime or on a
/// runtime of its own. Dropping it stops the server, which closes its
/// listener and every open connection.
#[derive(Debug)]
pub struct Background {
    task: Option<JoinHandle<io::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Background {
    /// Runs `server` as a task of the current runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(server: impl Future<Output = io::Result<()>> + Send + 'static) -> Self {
        Self {
            task: Some(tokio::spawn(server)),
            runtime: None,
        }
    }

    /// Runs `server` on a new runtime of `threads` worker threads, so its
    /// work is not counted as the caller's CPU time. Works inside or
    /// outside a runtime.
    pub fn on_own_runtime(
        threads: usize,
        server: impl Future<Output = io::Result<()>> + Send + 'static,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?;
        Ok(Self {
            task: Some(runtime.spawn(server)),
            runtime: Some(runtime),
        })
    }

    /// Waits until the server stopped (its shutdown future completed);
    /// its result, or `Ok` once it was awaited before.
    pub async fn stopped(&mut self) -> io::Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let result = task.await;
        self.task = None;
        result.unwrap_or_else(|e| Err(io::Error::other(e)))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
