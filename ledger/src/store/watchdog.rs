//! Pooled connections that cannot hang: every connection's byte stream is watched, and a
//! connection that has sent Postgres a request and heard nothing back for the response
//! timeout (or could not send for that long, or did not finish its startup within the connect
//! timeout) is closed. The call waiting on it fails at once with a closed-connection error
//! (`database_unavailable`), and the pool discards the connection instead of recycling it.
//!
//! This is the client-side deadline of every store call: it holds for all of them because it
//! sits under all of them, and it sees what the kernel cannot — a server, proxy or partition
//! that still acknowledges TCP but answers nothing.
//!
//! "Has a request outstanding" is read off the protocol's framing: every simple query (`Q`)
//! and every `Sync` (`S`), and the startup message, is answered by exactly one
//! `ReadyForQuery` (`Z`), except the `Sync` that follows an extended-protocol `COPY … FROM
//! STDIN`, which Postgres ignores once it has entered copy-in mode (`G`).

use super::timeouts::DbTimeouts;
use prometheus::IntCounterVec;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::{Config, NoTls};

/// `vaultmesh_db_stalls_total{phase}`: Postgres connections given up on — `connect` (no
/// connection or no finished startup within the connect timeout), `response` (a request
/// unanswered for the response timeout), `send` (a request that could not be sent for that
/// long).
pub static DB_STALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        prometheus::Opts::new(
            "vaultmesh_db_stalls_total",
            "Postgres connections closed because the database did not answer in time",
        ),
        &["phase"],
    )
    .unwrap_or_else(|_| unreachable!())
});

/// `vaultmesh_db_requests_total`: requests sent to Postgres (each simple query and each
/// extended-protocol `Sync`, i.e. each round trip), by every pool of the process.
pub static DB_REQUESTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::IntCounter::new(
        "vaultmesh_db_requests_total",
        "Requests (round trips) sent to Postgres",
    )
    .unwrap_or_else(|_| unreachable!())
});

/// Registers [`DB_STALLS`] and [`DB_REQUESTS`] in a service's registry.
pub fn register_metrics(registry: &prometheus::Registry) -> prometheus::Result<()> {
    registry.register(Box::new(DB_STALLS.clone()))?;
    registry.register(Box::new(DB_REQUESTS.clone()))
}

/// The two limits a watched connection enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    connect: Duration,
    response: Duration,
}

impl From<&DbTimeouts> for Limits {
    fn from(t: &DbTimeouts) -> Self {
        Self {
            connect: t.connect,
            response: t.response,
        }
    }
}

/// Splits one direction of the protocol into messages as its bytes pass, reporting each
/// message's type byte once its header is complete (`None` for the untyped startup message).
struct Framer {
    untyped_next: bool,
    header: [u8; 5],
    have: usize,
    body_left: u64,
}

impl Framer {
    fn new(starts_untyped: bool) -> Self {
        Self {
            untyped_next: starts_untyped,
            header: [0; 5],
            have: 0,
            body_left: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], mut on_message: impl FnMut(Option<u8>)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = usize::try_from(self.body_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skip..];
                self.body_left -= skip as u64;
                continue;
            }
            let need = if self.untyped_next { 4 } else { 5 };
            let take = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < need {
                continue;
            }
            let (kind, len) = if self.untyped_next {
                (
                    None,
                    [
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ],
                )
            } else {
                (
                    Some(self.header[0]),
                    [
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ],
                )
            };
            self.body_left = u64::from(u32::from_be_bytes(len)).saturating_sub(4);
            self.have = 0;
            self.untyped_next = false;
            on_message(kind);
        }
    }
}

/// A byte stream to Postgres with the watchdog in it (see the module documentation).
pub(crate) struct Watched<S> {
    inner: S,
    limits: Limits,
    sent: Framer,
    received: Framer,
    expected: u64,
    started: bool,
    waiting_since: Option<Instant>,
    blocked_since: Option<Instant>,
    fired: bool,
    timer: Pin<Box<Sleep>>,
}

impl<S> Watched<S> {
    /// Watches `inner`, a fresh connection whose first message will be the startup message.
    pub(crate) fn new(inner: S, limits: Limits) -> Self {
        Self {
            inner,
            limits,
            sent: Framer::new(true),
            received: Framer::new(false),
            expected: 0,
            started: false,
            waiting_since: None,
            blocked_since: None,
            fired: false,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn on_sent(&mut self, bytes: &[u8]) {
        let mut asked = 0;
        self.sent.feed(bytes, |kind| {
            if matches!(kind, None | Some(b'Q' | b'S' | b'F')) {
                asked += 1;
            }
        });
        if asked == 0 {
            return;
        }
        DB_REQUESTS.inc_by(asked);
        if self.expected == 0 {
            self.waiting_since = Some(Instant::now());
        }
        self.expected += asked;
    }

    fn on_received(&mut self, bytes: &[u8]) {
        let (mut answered, mut ready) = (0u64, false);
        self.received.feed(bytes, |kind| match kind {
            Some(b'Z') => {
                answered += 1;
                ready = true;
            }
            Some(b'G') => answered += 1,
            _ => {}
        });
        self.started |= ready;
        self.expected = self.expected.saturating_sub(answered);
        self.waiting_since = (self.expected > 0).then(Instant::now);
    }

    /// The limit in force: the connect timeout until the startup has finished.
    fn limit(&self) -> Duration {
        if self.started {
            self.limits.response
        } else {
            self.limits.connect
        }
    }

    /// Arms the timer for the current deadline, if there is one; whether it has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.fired {
            return true;
        }
        let since = match (self.waiting_since, self.blocked_since) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return false,
        };
        let deadline = since + self.limit();
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.fired = true;
        let phase = if !self.started {
            "connect"
        } else if self.waiting_since == Some(since) {
            "response"
        } else {
            "send"
        };
        DB_STALLS.with_label_values(&[phase]).inc();
        true
    }

    fn stalled(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "Postgres did not answer within {} ms; connection closed",
                self.limit().as_millis()
            ),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fired {
            return Poll::Ready(Err(this.stalled()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_received(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(this.stalled())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(this.stalled()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.blocked_since = None;
                this.on_sent(&buf[..n]);
                // The connection reads before it writes: the timer must wake it even if
                // nothing is ever read again.
                if this.expired(cx) {
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.blocked_since.get_or_insert_with(Instant::now);
                if this.expired(cx) {
                    Poll::Ready(Err(this.stalled()))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The socket under a watched connection, or why there is none (then the startup fails
/// with that error, which is how it reaches the pool as a `tokio_postgres::Error`).
pub(crate) enum Transport {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    /// No connection could be made.
    Failed(Option<io::Error>),
}

impl Transport {
    fn failure(slot: &mut Option<io::Error>) -> io::Error {
        slot.take()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no connection"))
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Failed(e) => Poll::Ready(Err(Transport::failure(e))),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Failed(e) => Poll::Ready(Err(Transport::failure(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::Failed(e) => Poll::Ready(Err(Transport::failure(e))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Failed(_) => Poll::Ready(Ok(())),
        }
    }
}

/// How many hosts the configuration names, checking the port list matches them.
fn host_count(config: &Config) -> io::Result<usize> {
    let count = config.get_hosts().len().max(config.get_hostaddrs().len());
    if count == 0 {
        return Err(invalid("the database URL names no host"));
    }
    let ports = config.get_ports().len();
    if ports > 1 && ports != count {
        return Err(invalid(
            "the database URL has a port count that matches no host count",
        ));
    }
    Ok(count)
}

/// Opens a transport to the configured host `i` (name lookup and connect) within `limit`, as
/// tokio-postgres would: `hostaddr` before `host`, one port for all hosts or one per host,
/// Unix-socket directories as `<dir>/.s.PGSQL.<port>`.
async fn open(config: &Config, i: usize, limit: Duration) -> io::Result<Transport> {
    let ports = config.get_ports();
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    match (config.get_hostaddrs().get(i), config.get_hosts().get(i)) {
        (Some(ip), _) => tcp(std::net::SocketAddr::new(*ip, port), limit).await,
        (None, Some(Host::Tcp(name))) => tcp_named(name, port, limit).await,
        #[cfg(unix)]
        (None, Some(Host::Unix(dir))) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            match tokio::time::timeout(limit, tokio::net::UnixStream::connect(path)).await {
                Ok(r) => r.map(Transport::Unix),
                Err(_) => Err(timed_out(limit)),
            }
        }
        (None, None) => Err(invalid("the database URL names no host")),
    }
}

async fn tcp_named(name: &str, port: u16, limit: Duration) -> io::Result<Transport> {
    let found = tokio::time::timeout(limit, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| timed_out(limit))??;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{name} has no address"));
    for addr in found {
        match tcp(addr, limit).await {
            Ok(t) => return Ok(t),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn tcp(addr: std::net::SocketAddr, limit: Duration) -> io::Result<Transport> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_keepalive(true)?;
    let stream = tokio::time::timeout(limit, socket.connect(addr))
        .await
        .map_err(|_| timed_out(limit))??;
    stream.set_nodelay(true)?;
    Ok(Transport::Tcp(stream))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no connection to Postgres within {} ms", limit.as_millis()),
    )
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The pool's way of opening connections: watched streams, with the session limits already
/// in the configuration's `options`, each opened (TCP connect, startup and authentication)
/// within the connect timeout in all.
pub(crate) struct WatchedConnect {
    limits: Limits,
}

impl WatchedConnect {
    /// Opens connections enforcing `timeouts`.
    pub(crate) fn new(timeouts: &DbTimeouts) -> Self {
        Self {
            limits: Limits::from(timeouts),
        }
    }
}

impl deadpool_postgres::Connect for WatchedConnect {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        let limits = self.limits;
        Box::pin(async move {
            let attempt = connect_any(&config, limits);
            match tokio::time::timeout(limits.connect, attempt).await {
                Ok(connected) => connected,
                Err(_) => {
                    DB_STALLS.with_label_values(&["connect"]).inc();
                    Err(refusal(&config, limits, timed_out(limits.connect)).await)
                }
            }
        })
    }
}

/// Tries each configured host in turn, as tokio-postgres would: the first that completes
/// startup wins, unless the URL asks for `target_session_attrs=read-write` and the server is
/// read-only (a standby), or for `read-only` and it is writable, in which case the next is
/// tried.
async fn connect_any(
    config: &Config,
    limits: Limits,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let count = match host_count(config) {
        Ok(n) => n,
        Err(e) => return Err(refusal(config, limits, e).await),
    };
    let wanted = config.get_target_session_attrs();
    let mut last = None;
    for i in 0..count {
        let transport = match open(config, i, limits.connect).await {
            Ok(t) => t,
            Err(e) => {
                last = Some(refusal(config, limits, e).await);
                continue;
            }
        };
        let (client, connection) = match config
            .connect_raw(Watched::new(transport, limits), NoTls)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                let limiter = &crate::telemetry::REPEATED_LOGS;
                if let Some(suppressed) = limiter.admit("postgres connection closed", "") {
                    tracing::warn!(error = %e, suppressed, "postgres connection closed");
                }
            }
        });
        if wanted != TargetSessionAttrs::Any {
            let read_only = client
                .simple_query("SHOW transaction_read_only")
                .await
                .map(|rows| {
                    rows.iter().any(|m| {
                        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("on"))
                    })
                });
            let refused = match (wanted, read_only) {
                (_, Err(e)) => Some(e),
                (TargetSessionAttrs::ReadWrite, Ok(true)) => Some(
                    refusal(
                        config,
                        limits,
                        invalid("the server is read-only (a standby)"),
                    )
                    .await,
                ),
                (TargetSessionAttrs::ReadOnly, Ok(false)) => Some(
                    refusal(
                        config,
                        limits,
                        invalid("the server is writable (a primary)"),
                    )
                    .await,
                ),
                _ => None,
            };
            if let Some(e) = refused {
                last = Some(e);
                continue;
            }
        }
        return Ok((client, task));
    }
    Err(match last {
        Some(e) => e,
        None => refusal(config, limits, invalid("the database URL names no host")).await,
    })
}

/// A connection error carrying `cause` (tokio-postgres builds its errors itself: a startup
/// over a transport that has already failed gives one).
async fn refusal(config: &Config, limits: Limits, cause: io::Error) -> tokio_postgres::Error {
    let mut cause = Some(cause);
    loop {
        let failed = Watched::new(Transport::Failed(cause.take()), limits);
        match config.connect_raw(failed, NoTls).await {
            Err(e) => return e,
            // (A failed transport never completes a startup; if it did, ask again.)
            Ok((client, _)) => drop(client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap_or(0).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00x\x00\x00";
        let mut m = u32::try_from(body.len() + 4)
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        m.extend_from_slice(body);
        m
    }

    fn limits(ms: u64) -> Limits {
        Limits {
            connect: Duration::from_millis(ms),
            response: Duration::from_millis(ms),
        }
    }

    fn watched() -> Watched<tokio::io::DuplexStream> {
        let (a, _b) = tokio::io::duplex(64);
        Watched::new(a, limits(1000))
    }

    /// `w` past its startup exchange, as a pooled connection is.
    fn started<S>(mut w: Watched<S>) -> Watched<S> {
        w.on_sent(&startup());
        w.on_received(&message(b'Z', b"I"));
        assert!(w.started && w.expected == 0);
        w
    }

    #[tokio::test]
    async fn requests_are_counted_across_splits_and_pipelines() {
        let mut w = watched();
        let hello = startup();
        w.on_sent(&hello[..3]);
        assert_eq!(w.expected, 0, "header not complete yet");
        w.on_sent(&hello[3..]);
        assert_eq!(w.expected, 1);
        let mut auth = message(b'R', &[0, 0, 0, 0]);
        auth.extend(message(b'S', b"a\0b\0"));
        auth.extend(message(b'K', &[0; 8]));
        w.on_received(&auth);
        assert!(!w.started && w.expected == 1 && w.waiting_since.is_some());
        w.on_received(&message(b'Z', b"I"));
        assert!(w.started && w.expected == 0 && w.waiting_since.is_none());

        let mut two = message(b'P', b"\0select 1\0\0\0");
        two.extend(message(b'D', b"S\0"));
        two.extend(message(b'S', b""));
        two.extend(message(b'Q', b"select 2\0"));
        for chunk in two.chunks(3) {
            w.on_sent(chunk);
        }
        assert_eq!(w.expected, 2);
        w.on_received(&message(b'Z', b"I"));
        assert_eq!(w.expected, 1, "the second request still waits");
        assert!(w.waiting_since.is_some());
        w.on_received(&message(b'Z', b"I"));
        assert_eq!(w.expected, 0);
    }

    #[tokio::test]
    async fn copy_in_ignores_the_sync_sent_with_its_execute() {
        let mut w = started(watched());
        let mut start = message(b'B', b"\0\0\0\0\0\0\0");
        start.extend(message(b'E', b"\0\0\0\0\0"));
        start.extend(message(b'S', b""));
        w.on_sent(&start);
        assert_eq!(w.expected, 1);
        let mut reply = message(b'2', b"");
        reply.extend(message(b'G', b"\x01\0\0"));
        w.on_received(&reply);
        assert_eq!(w.expected, 0, "copying: nothing is awaited");
        w.on_sent(&message(b'd', &[7; 100]));
        assert_eq!(w.expected, 0);
        let mut done = message(b'c', b"");
        done.extend(message(b'S', b""));
        w.on_sent(&done);
        assert_eq!(w.expected, 1);
        let mut end = message(b'C', b"COPY 1\0");
        end.extend(message(b'Z', b"I"));
        w.on_received(&end);
        assert_eq!(w.expected, 0);
    }

    #[tokio::test]
    async fn an_unanswered_request_fails_the_stream_and_an_answered_one_does_not() {
        let (a, mut server) = tokio::io::duplex(1 << 16);
        let mut w = started(Watched::new(a, limits(150)));
        w.write_all(&message(b'Q', b"select 1\0"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = vec![0; 64];
        let n = server
            .read(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0);
        server
            .write_all(&message(b'Z', b"I"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0; 64];
        let n = w.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 6);
        let idle = tokio::time::timeout(Duration::from_millis(400), w.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle connection is left alone");

        w.write_all(&message(b'Q', b"select pg_sleep(10)\0"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let err = match w.read(&mut buf).await {
            Ok(n) => panic!("read {n} bytes from a silent server"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(140) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
        assert!(
            w.write_all(b"x").await.is_err(),
            "a stalled stream stays failed"
        );
    }
}
