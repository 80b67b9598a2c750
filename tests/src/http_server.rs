//! The loopback HTTP/1 server loop shared by the test servers.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

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
    serve_with(
        listener,
        |stream| std::future::ready(Ok(stream)),
        state,
        move |state, req| {
            let fut = handler(state, req);
            async move { Ok::<_, Infallible>(fut.await) }
        },
    )
    .await;
}

/// [`serve`] with two extensions: each accepted TCP stream first goes
/// through `accept` (a TLS handshake, say; run in the connection's task, a
/// failure drops the connection), and `handler` may fail, in which case
/// hyper closes the connection without writing a response.
pub async fn serve_with<A, AFut, IO, S, F, Fut, E>(
    listener: TcpListener,
    accept: A,
    state: Arc<S>,
    handler: F,
) where
    A: Fn(TcpStream) -> AFut,
    AFut: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>> + 'static,
{
    // Dropping the set aborts the connection tasks, so a dropped server
    // stops answering on kept-alive and hanging connections too.
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => return,
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let handshake = accept(stream);
        let state = Arc::clone(&state);
        let handler = handler.clone();
        connections.spawn(async move {
            let Ok(io) = handshake.await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handler(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}
