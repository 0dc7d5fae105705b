//! The HTTP listener's serve loop: the axum [`Router`] on HTTP/1.1 connections, with
//! limits that slow, idle and hostile clients cannot get around. With the `http:`
//! settings it guarantees that:
//! - a connection that has not sent a whole request head `header_timeout` after the
//!   server started waiting for it (from the accept, or from the end of the previous
//!   response on a keep-alive connection) is closed without an answer;
//! - at most `max_connections` connections are open; at the cap nothing more is
//!   accepted until one closes, and clients wait in the kernel's accept queue;
//! - on shutdown it stops accepting, closes idle connections at once, lets requests in
//!   progress finish, and drops every connection still open `shutdown_grace` later,
//!   so [`Listener::serve`] returns within `shutdown_grace` of the cancellation;
//! - every request carries its peer's address as [`ConnectInfo<SocketAddr>`].
//!
//! Request bodies are bounded where they are read: the HTTP sources apply
//! `body_timeout` and their `body_limit`.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use switchyard_core::config::HttpConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long the listener pauses after an accept error that is not about one client,
/// such as running out of file descriptors, so that it does not spin on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A bound socket and the router it serves, with the limits of `http:`.
pub(crate) struct Listener {
    tcp: TcpListener,
    app: Router,
    http: http1::Builder,
    /// One permit per open connection; a connection's task holds its permit.
    slots: Arc<Semaphore>,
    max_connections: u32,
    shutdown_grace: Duration,
}

impl Listener {
    /// Prepares to serve `app` on `tcp` with the limits in `config`.
    pub(crate) fn new(tcp: TcpListener, app: Router, config: &HttpConfig) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout.get());
        Self {
            tcp,
            app,
            http,
            slots: Arc::new(Semaphore::new(config.max_connections as usize)),
            max_connections: config.max_connections,
            shutdown_grace: config.shutdown_grace.get(),
        }
    }

    /// Accepts and serves connections until `shutdown` is cancelled, then closes the
    /// socket and returns once every connection has closed or been dropped, which is
    /// at most `shutdown_grace` later.
    pub(crate) async fn serve(self, shutdown: CancellationToken) {
        loop {
            let (stream, peer, permit) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.accept() => accepted,
            };
            tokio::spawn(serve_connection(
                self.http.clone(),
                stream,
                peer,
                self.app.clone(),
                Shutdown {
                    token: shutdown.clone(),
                    grace: self.shutdown_grace,
                },
                permit,
            ));
        }
        drop(self.tcp);
        // Every connection task returns its permit when it ends, so holding all of them
        // means none is left. The semaphore is never closed, so this cannot fail.
        if self.slots.acquire_many(self.max_connections).await.is_err() {
            tracing::error!("the connection semaphore closed while connections were open");
        }
    }

    /// Waits for a free connection slot, then for a client. Cancel-safe: a client is
    /// only taken off the accept queue when this returns it.
    async fn accept(&self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            unreachable!("the connection semaphore is never closed")
        };
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(error) if concerns_one_client(&error) => {
                    tracing::debug!(%error, "a client went away before it was accepted");
                }
                Err(error) => {
                    tracing::error!(%error, "cannot accept connections; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

/// When a connection must wind down, and how long it then has.
struct Shutdown {
    token: CancellationToken,
    grace: Duration,
}

/// Serves one connection until it closes. Once `shutdown` is cancelled, an idle
/// connection closes at once, a request in progress may finish (its response says
/// `connection: close`), and whatever is left after the grace is dropped. The permit
/// is returned when this ends.
async fn serve_connection(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let app = TowerToHyperService::new(app);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.call(request)
    });
    let mut connection = pin!(http.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.token.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(shutdown.grace, connection).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(%peer, "dropped a connection still open after the shutdown grace");
                    return;
                }
            }
        }
    };
    // Timeouts and clients that vanish end connections with an error; that is
    // routine, so it is only worth a debug line.
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection closed");
    }
}

/// Whether an accept error concerns only the client being accepted (it reset or
/// aborted its connection), rather than the listener.
fn concerns_one_client(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
