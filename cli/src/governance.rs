//! `vaultmesh constitution` and `vaultmesh emergency`: the governance API (SPEC §13) from the
//! command line, through a portal with an admin key.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where the portal is and which key to use.
#[derive(Args, Clone)]
pub struct PortalAccess {
    /// Portal base URL.
    #[arg(
        long,
        env = "VAULTMESH_PORTAL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    portal_url: String,
    /// Admin API key (needed to adopt, raise or lift; reading needs none).
    #[arg(long, env = "VAULTMESH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// The constitution enforced at the append gate.
#[derive(Subcommand)]
pub enum ConstitutionCommand {
    /// Print the constitution in force and the receipt that adopted it.
    Show(PortalAccess),
    /// Adopt the constitution in FILE (a JSON document; its version must be above the one in
    /// force). With --if-newer, a version not above it is left alone and exits 0.
    Adopt {
        #[command(flatten)]
        access: PortalAccess,
        /// The constitution document.
        file: PathBuf,
        /// Exit 0 without adopting when the version in force is the same or newer.
        #[arg(long)]
        if_newer: bool,
    },
}

/// The emergency freeze.
#[derive(Subcommand)]
pub enum EmergencyCommand {
    /// Freeze all client writes on every service, giving a reason.
    Raise {
        #[command(flatten)]
        access: PortalAccess,
        /// Why (recorded in the `emergency_raised` receipt).
        #[arg(long)]
        reason: String,
    },
    /// Lift the freeze.
    Lift(PortalAccess),
    /// Print whether a freeze is raised (exit status 0 either way).
    Status(PortalAccess),
}

async fn send(
    access: &PortalAccess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}{path}", access.portal_url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(k) = &access.api_key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| url.clone())?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn failed(status: u16, v: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "HTTP {status}: {} ({})",
        v["error"]["message"].as_str().unwrap_or("no message"),
        v["error"]["code"].as_str().unwrap_or("no code")
    )
}

/// Runs a constitution command.
pub async fn constitution(cmd: ConstitutionCommand) -> anyhow::Result<()> {
    match cmd {
        ConstitutionCommand::Show(access) => {
            let (s, v) = send(
                &access,
                reqwest::Method::GET,
                "/v1/governance/constitution",
                None,
            )
            .await?;
            if s != 200 {
                return Err(failed(s, &v));
            }
            print(&v)
        }
        ConstitutionCommand::Adopt {
            access,
            file,
            if_newer,
        } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", file.display()))?;
            let (s, v) = send(
                &access,
                reqwest::Method::POST,
                "/v1/governance/constitution",
                Some(json!({ "constitution": doc })),
            )
            .await?;
            match s {
                201 => print(&v),
                409 if if_newer && v["error"]["code"] == "stale_version" => {
                    eprintln!("constitution left as is: {}", v["error"]["message"]);
                    Ok(())
                }
                _ => Err(failed(s, &v)),
            }
        }
    }
}

/// Runs an emergency command.
pub async fn emergency(cmd: EmergencyCommand) -> anyhow::Result<()> {
    let (access, method, body) = match cmd {
        EmergencyCommand::Raise { access, reason } => (
            access,
            reqwest::Method::POST,
            Some(json!({ "reason": reason })),
        ),
        EmergencyCommand::Lift(access) => (access, reqwest::Method::DELETE, None),
        EmergencyCommand::Status(access) => (access, reqwest::Method::GET, None),
    };
    let (s, v) = send(&access, method, "/v1/governance/emergency", body).await?;
    if !(200..300).contains(&s) {
        return Err(failed(s, &v));
    }
    if v.get("active").is_none() {
        bail!("unexpected answer: {v}");
    }
    print(&v)
}
