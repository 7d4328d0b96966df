//! Embedded refinery migrations from `migrations/`.

use super::StoreError;
use sha3::{Digest, Sha3_256};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Hex digest of all migration names and SQL, to name schema templates by content.
pub static MIGRATIONS_DIGEST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut h = Sha3_256::new();
    for m in embedded::migrations::runner().get_migrations() {
        h.update(m.name().as_bytes());
        h.update(m.sql().unwrap_or_default().as_bytes());
    }
    hex::encode(&h.finalize()[..8])
});

/// Applies pending migrations using `url` (a role that owns the schema).
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let (mut client, conn) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(conn);
    let result = embedded::migrations::runner()
        .set_grouped(true)
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()));
    drop(client);
    let _ = driver.await;
    result.map(|_| ())
}
