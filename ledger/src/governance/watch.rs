//! Keeps a service's governance state current: a dedicated Postgres connection LISTENs on
//! [`GOVERNANCE_CHANNEL`] and wakes a reload at once; a poll every `settings.poll` reloads
//! when the newest governance receipt changed, so a lost notification or a dead listener
//! delays a change by at most one poll. The poll's probe runs on the listening connection
//! (on the pool only while that connection is down).

use super::Governance;
use crate::service::Shutdown;
use crate::store::GOVERNANCE_CHANNEL;
use futures_util::StreamExt;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

/// A LISTEN connection: notifications arrive on `rx`; `rx` closes when the connection dies.
/// The poll's probe runs on it too, so polling takes nothing from the service's pool.
struct Listener {
    client: tokio_postgres::Client,
    rx: mpsc::Receiver<()>,
}

impl Listener {
    async fn connect(url: &str) -> Result<Self, String> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(2));
        }
        let (client, mut conn) = tokio::time::timeout(
            Duration::from_secs(3),
            config.connect(tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                        let _ = tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        tokio::time::timeout(
            Duration::from_secs(3),
            client.batch_execute(&format!("LISTEN {GOVERNANCE_CHANNEL}")),
        )
        .await
        .map_err(|_| "LISTEN timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(Self { client, rx })
    }

    /// The governance marker, read on this connection.
    async fn marker(&self) -> Result<Option<u64>, String> {
        let row = tokio::time::timeout(
            Duration::from_secs(2),
            self.client
                .query_one(crate::store::GOVERNANCE_MARKER_SQL, &[]),
        )
        .await
        .map_err(|_| "probe timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(crate::store::governance_marker_of(&row))
    }
}

/// Runs until `shutdown`.
pub(super) async fn run(gov: Governance, url: String, shutdown: Shutdown) {
    let poll = gov.settings().poll;
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut listener: Option<Listener> = None;
    let mut next_connect = tokio::time::Instant::now();
    loop {
        gov.set_listening(listener.is_some());
        if listener.is_none() && tokio::time::Instant::now() >= next_connect {
            match Listener::connect(&url).await {
                Ok(l) => {
                    listener = Some(l);
                    gov.set_listening(true);
                    // A change made while nobody listened is picked up by this reload.
                    let _ = gov.refresh().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "governance listener not connected; polling");
                    next_connect = tokio::time::Instant::now() + Duration::from_secs(5);
                }
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.rx.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            alive = notified => {
                if !alive {
                    listener = None;
                }
            }
            _ = tokio::time::sleep(poll) => {}
        }
        let refreshed = match listener.as_ref() {
            Some(l) => match l.marker().await {
                Ok(marker) => gov.refresh_at(marker).await.map_err(|e| e.to_string()),
                Err(e) => {
                    tracing::warn!(error = %e, "governance listener lost; polling until it reconnects");
                    listener = None;
                    gov.set_listening(false);
                    Err(e)
                }
            },
            None => gov.refresh().await.map_err(|e| e.to_string()),
        };
        if let Err(e) = refreshed {
            tracing::debug!(error = %e, "governance state not reloaded");
        }
    }
}
