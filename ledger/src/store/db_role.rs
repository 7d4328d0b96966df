//! The Postgres roles VaultMesh's services connect as (migration V3): each has only the
//! rights its service needs, so one service's credentials cannot rewrite another's evidence.

/// A service's own database role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbRole {
    /// Appends client receipts, creates scrolls, reads.
    Portal,
    /// Integrates, signs checkpoints and ProofChain heads, anchors.
    Guardian,
    /// Appends oracle answers, loads the corpus, reads.
    Oracle,
}

impl DbRole {
    /// Every service role.
    pub const ALL: [DbRole; 3] = [DbRole::Portal, DbRole::Guardian, DbRole::Oracle];

    /// The role's name in Postgres.
    pub fn name(self) -> &'static str {
        match self {
            DbRole::Portal => "vaultmesh_portal",
            DbRole::Guardian => "vaultmesh_guardian",
            DbRole::Oracle => "vaultmesh_oracle",
        }
    }

    /// The dev stack's URL for this role (password = role name; ops/lib/stack.sh).
    pub fn dev_url(self) -> String {
        format!("postgres://{0}:{0}@127.0.0.1:5432/vaultmesh", self.name())
    }
}

impl DbRole {
    /// The role of the service named `service` (`portal`, `guardian`, `oracle`).
    pub fn of_service(service: &str) -> Option<DbRole> {
        match service {
            "portal" => Some(DbRole::Portal),
            "guardian" => Some(DbRole::Guardian),
            "oracle" => Some(DbRole::Oracle),
            _ => None,
        }
    }
}
