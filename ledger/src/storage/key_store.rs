//! The key role: API keys, stored only as hashes of their tokens.

use super::StoreFuture;
use crate::store::{ApiKey, NewApiKey, Role, Store};

/// Creates, finds and revokes API keys.
pub trait KeyStore: Send + Sync {
    /// Creates a key with a fresh random token (returned once, never stored).
    fn create_api_key<'a>(
        &'a self,
        role: Role,
        scrolls: Option<Vec<String>>,
        label: &'a str,
    ) -> StoreFuture<'a, NewApiKey>;

    /// The key whose token this is, revoked or not.
    fn api_key_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<ApiKey>>;

    /// Every key.
    fn list_api_keys(&self) -> StoreFuture<'_, Vec<ApiKey>>;

    /// Revokes key `id`; false if there is no such live key.
    fn revoke_api_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
}

impl KeyStore for Store {
    fn create_api_key<'a>(
        &'a self,
        role: Role,
        scrolls: Option<Vec<String>>,
        label: &'a str,
    ) -> StoreFuture<'a, NewApiKey> {
        Box::pin(Store::create_api_key(self, role, scrolls, label))
    }

    fn api_key_by_token<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<ApiKey>> {
        Box::pin(Store::api_key_by_token(self, token))
    }

    fn list_api_keys(&self) -> StoreFuture<'_, Vec<ApiKey>> {
        Box::pin(Store::list_api_keys(self))
    }

    fn revoke_api_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(Store::revoke_api_key(self, id))
    }
}
