//! A TCP proxy on 127.0.0.1 between a service and Postgres that can be switched to
//! "blackhole": every connection stays open and nothing is forwarded in either direction —
//! what a service sees when a network partitions or a primary hangs while the kernel still
//! acknowledges its packets. Bytes (and closes) that arrive meanwhile wait in the proxy and
//! are delivered once forwarding resumes, as a healed network delivers retransmissions; new
//! connections are accepted but reach Postgres only then.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running proxy; dropping it closes every connection through it.
pub struct Blackhole {
    /// Where clients connect.
    pub addr: SocketAddr,
    forwarding: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    /// A forwarding proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy address: {e}"));
        let (forwarding, on) = watch::channel(true);
        let accept = tokio::spawn(async move {
            let mut links = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                links.spawn(link(client, upstream, on.clone()));
            }
        });
        Self {
            addr,
            forwarding,
            accept,
        }
    }

    /// Stops (false) or resumes (true) forwarding on every connection, present and future.
    pub fn set_forwarding(&self, on: bool) {
        self.forwarding.send_replace(on);
    }

    /// `url` (a `postgres://…@host:port/db` URL) pointed at the proxy instead.
    pub fn url(&self, url: &str) -> String {
        let (head, rest) = url
            .split_once('@')
            .unwrap_or_else(|| panic!("no host in {url}"));
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("{head}@{}{path}", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The Postgres server of a `postgres://…@host:port/…` URL.
pub fn upstream_of(url: &str) -> SocketAddr {
    let authority = url
        .split_once('@')
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or_default();
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority:?} is not host:port: {e}"))
}

async fn until_forwarding(on: &mut watch::Receiver<bool>) -> bool {
    on.wait_for(|forwarding| *forwarding).await.is_ok()
}

async fn link(client: TcpStream, upstream: SocketAddr, mut on: watch::Receiver<bool>) {
    if !until_forwarding(&mut on).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, on.clone()),
        pump(server_read, client_write, on),
    );
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut on: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !until_forwarding(&mut on).await {
            return;
        }
        let n = from.read(&mut buf).await.unwrap_or(0);
        if !until_forwarding(&mut on).await {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
