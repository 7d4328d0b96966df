//! VaultMesh ledger core: the formats of SPEC §3 and the storage every service shares.
//!
//! Pure format code (`jcs`, `receipt`, `hash`, `merkle`, `note`, `checkpoint`, `cosignature`, `add_checkpoint`,
//! `proofchain`, `bundle`, `timestamp`) has no I/O; `store` and `cache` talk to Postgres and
//! Redis; `config`, `telemetry`, `metrics` and `service` are the plumbing each binary uses.

pub mod add_checkpoint;
pub mod api_error;
pub mod auth;
pub mod body;
pub mod bundle;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod context;
pub mod cosignature;
pub mod gate;
pub mod governance;
pub mod hash;
pub mod http_guard;
pub mod jcs;
pub mod merkle;
pub mod mesh;
pub mod metrics;
pub mod note;
pub mod proofchain;
pub mod rate_limit;
pub mod receipt;
pub mod rng;
pub mod service;
pub mod storage;
pub mod store;
pub mod strict_json;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timestamp;
