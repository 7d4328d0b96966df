//! Guardian-specific options (flags and `VAULTMESH_*` environment variables).

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options only the guardian has.
#[derive(Debug, Clone, Args)]
pub struct GuardianArgs {
    /// Checkpoint signing key: a signed-note private key file made by `vaultmesh keygen`.
    /// The guardian refuses to start without it (it never invents a key).
    #[arg(
        long,
        env = "VAULTMESH_SIGNING_KEY_FILE",
        default_value = ".vaultmesh/guardian.key"
    )]
    pub signing_key_file: PathBuf,
    /// Milliseconds between integration passes (integrate new receipts, sign checkpoints).
    #[arg(long, env = "VAULTMESH_INTEGRATE_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub integrate_interval_ms: u64,
    /// Most leaves integrated per transaction.
    #[arg(long, env = "VAULTMESH_INTEGRATE_BATCH", default_value_t = 50_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub integrate_batch: u32,
    /// Seconds between epochs: each builds, stores and ships one ProofChain anchor record.
    #[arg(long, env = "VAULTMESH_EPOCH_INTERVAL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub epoch_interval_secs: u64,
    /// Journal sink: append-only JSON-lines file of anchor records, fsync'd after each line
    /// (the off-database copy to keep on WORM storage). Empty disables the sink.
    #[arg(
        long,
        env = "VAULTMESH_JOURNAL_PATH",
        default_value = ".vaultmesh/proofchain.jsonl"
    )]
    pub journal_path: PathBuf,
    /// RFC 3161 timestamp authority URL; set it to timestamp every epoch (needs
    /// `--tsa-cert-file`).
    #[arg(long, env = "VAULTMESH_TSA_URL", requires = "tsa_cert_file")]
    pub tsa_url: Option<String>,
    /// PEM certificate the TSA's tokens must verify with (ECDSA P-256 or RSA, SHA-256).
    #[arg(long, env = "VAULTMESH_TSA_CERT_FILE", value_name = "FILE")]
    pub tsa_cert_file: Option<PathBuf>,
    /// Seconds to wait for the TSA.
    #[arg(long, env = "VAULTMESH_TSA_TIMEOUT_SECS", default_value_t = 10)]
    pub tsa_timeout_secs: u64,
    /// Run one verification pass instead of serving: every stored receipt re-hashed and its
    /// tree recomputed against the signed checkpoints, the ProofChain and the journal file;
    /// prints the report as JSON and exits 0 when intact, 1 on any finding. Writes nothing
    /// and starts no listener (for restore drills and audits of a database copy).
    #[arg(long)]
    pub verify_once: bool,
    /// With `--verify-once`: check signatures with this verifier key file (the public vkey)
    /// instead of the signing key, so an auditor needs no secret.
    #[arg(long, value_name = "FILE", requires = "verify_once")]
    pub vkey_file: Option<PathBuf>,
    /// This guardian's witness key (cosignature/v1, made by `vaultmesh keygen --witness`):
    /// with it, the guardian cosigns checkpoints of the meshes given by `--remote-mesh`.
    #[arg(long, env = "VAULTMESH_WITNESS_KEY_FILE", value_name = "FILE")]
    pub witness_key_file: Option<PathBuf>,
    /// A remote mesh this guardian witnesses, `MESH_ID,GUARDIAN_VKEY,PORTAL_URL`: it accepts
    /// add-checkpoint requests for origins `MESH_ID/…` signed by that key. Repeat the flag;
    /// in the environment, separate entries with `;`. Needs `--witness-key-file`.
    #[arg(
        long = "remote-mesh",
        env = "VAULTMESH_REMOTE_MESHES",
        value_delimiter = ';',
        value_name = "MESH_ID,GUARDIAN_VKEY,PORTAL_URL",
        requires = "witness_key_file"
    )]
    pub remote_meshes: Vec<crate::witness::RemoteMesh>,
    /// A witness asked to cosign this mesh's checkpoints, `MESH_ID,WITNESS_VKEY,GUARDIAN_URL`
    /// (its add-checkpoint is `GUARDIAN_URL/v1/witness/add-checkpoint`). Repeat the flag; in
    /// the environment, separate entries with `;`.
    #[arg(
        long = "witness",
        env = "VAULTMESH_WITNESSES",
        value_delimiter = ';',
        value_name = "MESH_ID,WITNESS_VKEY,GUARDIAN_URL"
    )]
    pub witnesses: Vec<crate::cosigning::WitnessEndpoint>,
    /// Milliseconds to wait for a witness's answer.
    #[arg(long, env = "VAULTMESH_WITNESS_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub witness_timeout_ms: u64,
    /// Milliseconds between checks of each remote mesh's portal (its public checkpoint and a
    /// consistency proof from what this witness cosigned).
    #[arg(long, env = "VAULTMESH_REMOTE_POLL_INTERVAL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub remote_poll_interval_ms: u64,
    /// Seconds a remote portal may keep serving a checkpoint smaller than one this witness
    /// cosigned before that is raised as a rollback.
    #[arg(long, env = "VAULTMESH_ROLLBACK_GRACE_SECS", default_value_t = 300)]
    pub rollback_grace_secs: u64,
    /// Seconds without a heartbeat after which the leading guardian announces a node as
    /// departed (a `node_departed` receipt; a psi `node_down` condition).
    #[arg(long, env = "VAULTMESH_NODE_DEPARTURE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub node_departure_secs: u64,
    /// Seconds a silent node's metrics stay exported (so `NodeDown` can fire) before they
    /// are retired, unless an admin removes the node first.
    #[arg(long, env = "VAULTMESH_NODE_RETENTION_SECS", default_value_t = 604_800,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub node_retention_secs: u64,
    /// Seconds a node that stopped on purpose (SIGTERM) stays exported, unhealthy, before its
    /// series are retired: long enough to be seen, shorter than `NodeUnhealthy`'s 5 minutes
    /// so that rolling restarts do not page.
    #[arg(
        long,
        env = "VAULTMESH_NODE_LEFT_RETENTION_SECS",
        default_value_t = 120
    )]
    pub node_left_retention_secs: u64,
    /// Milliseconds between evaluations of the psi phase (and of the mesh's nodes).
    #[arg(long, env = "VAULTMESH_PSI_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub psi_interval_ms: u64,
    /// Seconds of probation after the last condition cleared (with a clean verification
    /// pass) before CITRINITAS becomes RUBEDO.
    #[arg(long, env = "VAULTMESH_PSI_QUIET_SECS", default_value_t = 600)]
    pub psi_quiet_secs: u64,
}

impl Default for GuardianArgs {
    fn default() -> Self {
        Self {
            signing_key_file: PathBuf::from(".vaultmesh/guardian.key"),
            integrate_interval_ms: 1000,
            integrate_batch: 50_000,
            epoch_interval_secs: 600,
            journal_path: PathBuf::from(".vaultmesh/proofchain.jsonl"),
            tsa_url: None,
            tsa_cert_file: None,
            tsa_timeout_secs: 10,
            verify_once: false,
            vkey_file: None,
            witness_key_file: None,
            remote_meshes: Vec::new(),
            witnesses: Vec::new(),
            witness_timeout_ms: 5000,
            remote_poll_interval_ms: 30_000,
            rollback_grace_secs: 300,
            node_departure_secs: 30,
            node_retention_secs: 604_800,
            node_left_retention_secs: 120,
            psi_interval_ms: 1000,
            psi_quiet_secs: 600,
        }
    }
}

impl GuardianArgs {
    /// The integration interval as a duration.
    pub fn integrate_interval(&self) -> Duration {
        Duration::from_millis(self.integrate_interval_ms)
    }

    /// The interval between checks of remote portals.
    pub fn remote_poll_interval(&self) -> Duration {
        Duration::from_millis(self.remote_poll_interval_ms)
    }

    /// The epoch interval as a duration.
    pub fn epoch_interval(&self) -> Duration {
        Duration::from_secs(self.epoch_interval_secs)
    }
}
