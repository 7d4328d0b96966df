//! `vaultmesh verify` against a real portal and guardian. A bundle verifies offline; a
//! tampered one, or one whose anchor record was re-dated (hash recomputed), left unsigned or
//! signed by another key, fails — in the CLI and in the independent Python verifier.
//! `verify log` verifies checkpoints, the signed ProofChain and sampled receipts, remembers
//! them, checks consistency on the next run, and fails (exit 1, state untouched) on a forked
//! history, a rewritten anchor, an anchored size beyond 2^53-1, a scroll dropped from the
//! listing, or an anchor still beyond the checkpoint on the run after it was deferred. With
//! `--tsa-cert`, RFC 3161 tokens by the real TSA pass; another TSA's, or one over another
//! record, fail.

mod verify_support;

use ledger::hash::{to_hex, Sha3Hasher};
use ledger::note::NoteSigner;
use ledger::proofchain::{AnchorRecord, AnchoredScroll};
use ledger::storage::{AnchorStore, CheckpointStore};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use verify_support::{
    make_tsa, path_str, python_verify, serve_tsa, text, token_over, vaultmesh, Proxy, Stack,
};

fn verify_bundle(file: &Path, vkey: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "bundle", path_str(file), "--vkey", path_str(vkey)];
    args.extend_from_slice(extra);
    vaultmesh(&args)
}

fn verify_log(url: &str, vkey: &Path, state: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "verify",
        "log",
        url,
        "--vkey",
        path_str(vkey),
        "--state",
        path_str(state),
    ];
    args.extend_from_slice(extra);
    vaultmesh(&args)
}

fn passes(o: &Output) -> bool {
    o.status.success()
}

fn fails_with(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(
        text(o).contains(needle),
        "expected {needle:?} in:\n{}",
        text(o)
    );
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_live_logs_verify_and_tampering_fails() {
    let s = Stack::start(None).await;
    s.submit(12).await;
    s.wait_checkpoint(12).await;
    s.anchor().await;

    // A bundle verifies offline; a tampered copy does not.
    let bundle = s.bundle(4).await;
    let file = s.dir.join("bundle.json");
    write(&file, &bundle);
    let out = verify_bundle(&file, &s.vkey, &[]);
    assert!(passes(&out), "{}", text(&out));
    assert!(
        text(&out).contains("\"seq\":4") && text(&out).contains("\"anchored_epoch\":1"),
        "{}",
        text(&out)
    );
    write(&file, &bundle.replace("\\\"i\\\":4", "\\\"i\\\":5"));
    let out = verify_bundle(&file, &s.vkey, &[]);
    fails_with(&out, "FAIL");

    // The live log: first run verifies and remembers.
    let url = s.url();
    let state = s.dir.join("state.json");
    let out = verify_log(
        &url,
        &s.vkey,
        &state,
        &["--token", &s.reader, "--samples", "4"],
    );
    assert!(passes(&out), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("OK drills: checkpoint 12 (first seen)")
            && t.contains("included in checkpoint 12")
            && t.contains("OK ProofChain: 1 epoch(s) from genesis, every head signed"),
        "{t}"
    );
    let saved = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{e}"));

    // The log grows: the next run checks consistency with what it saw.
    s.submit(5).await;
    s.wait_checkpoint(17).await;
    s.anchor().await;
    let out = verify_log(&url, &s.vkey, &state, &[]);
    assert!(passes(&out), "{}", text(&out));
    assert!(
        text(&out).contains("OK drills: checkpoint 17 consistent with 12 seen before"),
        "{}",
        text(&out)
    );

    // A state file remembering another history (a fork) fails, and is left as it was.
    let forked = saved.replace("\"tree_size\": 12", "\"tree_size\": 11");
    assert_ne!(forked, saved);
    write(&state, &forked);
    let out = verify_log(&url, &s.vkey, &state, &[]);
    fails_with(&out, "FAIL drills: size 11 is not consistent with size 17");
    assert_eq!(std::fs::read_to_string(&state).unwrap_or_default(), forked);

    // A rewritten anchor fails the ProofChain check.
    std::fs::remove_file(&state).unwrap_or_else(|e| panic!("{e}"));
    let owner = s.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .batch_execute(
            "ALTER TABLE anchors DISABLE TRIGGER USER; \
             UPDATE anchors SET record = replace(record, '\"mesh\":\"vaultmesh-test\"', '\"mesh\":\"vaultmesh-evil\"') WHERE epoch = 1; \
             ALTER TABLE anchors ENABLE TRIGGER USER;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = verify_log(&url, &s.vkey, &state, &[]);
    fails_with(&out, "FAIL ProofChain: epoch 1");
    assert!(!state.exists(), "no state saved after a failure");
    s.stop().await;
}

/// The bundle's anchor record, changed by `edit`, written to `name` in `dir`.
fn edited_bundle(
    bundle: &str,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut AnchorRecord),
) -> PathBuf {
    let mut b: ledger::bundle::ProofBundle =
        serde_json::from_str(bundle).unwrap_or_else(|e| panic!("{e}"));
    let anchor = b
        .anchor
        .as_mut()
        .unwrap_or_else(|| panic!("the bundle is not anchored"));
    edit(anchor);
    let file = dir.join(name);
    write(
        &file,
        &serde_json::to_string_pretty(&b).unwrap_or_else(|e| panic!("{e}")),
    );
    file
}

/// Re-dates a record and recomputes its hash, as anyone can without the guardian's key.
fn redate(r: &mut AnchorRecord) {
    r.anchored_at = "2020-01-01T00:00:00.000000Z".into();
    r.anchor_hash = to_hex(&Sha3Hasher::plain(
        &r.hashed_bytes().unwrap_or_else(|e| panic!("{e}")),
    ));
    assert!(r.verify().is_ok(), "the forgery is self-consistent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_and_wrongly_signed_epochs_fail_in_both_verifiers() {
    let s = Stack::start(None).await;
    s.submit(3).await;
    s.wait_checkpoint(3).await;
    s.anchor().await;
    let bundle = s.bundle(1).await;
    let good = s.dir.join("good.json");
    write(&good, &bundle);
    let out = verify_bundle(&good, &s.vkey, &[]);
    assert!(passes(&out), "{}", text(&out));
    let (ok, said) = python_verify(&good, &s.vkey);
    assert!(ok, "the Python verifier accepts the served bundle: {said}");
    assert!(said.contains("anchored in epoch 1"), "{said}");

    let stranger =
        NoteSigner::generate("vaultmesh-test/guardian").unwrap_or_else(|e| panic!("{e}"));
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "self-built epoch (re-dated, hash recomputed, old head kept)",
            edited_bundle(&bundle, &s.dir, "redated.json", redate),
            "signed head rejected",
        ),
        (
            "self-built epoch with no head",
            edited_bundle(&bundle, &s.dir, "redated-unsigned.json", |r| {
                redate(r);
                r.signature = None;
            }),
            "no signed head",
        ),
        (
            "unsigned epoch",
            edited_bundle(&bundle, &s.dir, "unsigned.json", |r| r.signature = None),
            "no signed head",
        ),
        (
            "epoch signed by another key of the same name",
            edited_bundle(&bundle, &s.dir, "stranger.json", |r| {
                r.signature = Some(r.sign_head(&stranger).unwrap_or_else(|e| panic!("{e}")));
            }),
            "signed head rejected",
        ),
        (
            "self-built epoch signed by another key",
            edited_bundle(&bundle, &s.dir, "redated-stranger.json", |r| {
                redate(r);
                r.signature = Some(r.sign_head(&stranger).unwrap_or_else(|e| panic!("{e}")));
            }),
            "signed head rejected",
        ),
    ];
    for (what, file, reason) in cases {
        let out = verify_bundle(&file, &s.vkey, &[]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(reason),
            "{what}: expected {reason:?}: {}",
            text(&out)
        );
        let (ok, said) = python_verify(&file, &s.vkey);
        assert!(!ok, "{what}: the Python verifier accepted it: {said}");
    }
    s.stop().await;
}

/// The `drills` listing without `drills`, as a log hiding the scroll would serve it.
fn listing_without_drills(listing: &str) -> String {
    let mut v: Value = serde_json::from_str(listing).unwrap_or_else(|e| panic!("{e}"));
    if let Some(a) = v["scrolls"].as_array_mut() {
        a.retain(|s| s["name"] != "drills");
    }
    v.to_string()
}

/// The record the schema owner (who holds no key) could not forge alone, but a holder of the
/// guardian's key — or a bug — could: epoch `epoch` anchoring `drills` at 2^53+1, otherwise
/// valid (its hashes computed from the exact integer, linked, head signed).
fn huge_record(signer: &NoteSigner, epoch: u64, prev: &str) -> AnchorRecord {
    let size: u64 = (1 << 53) + 1;
    let root = to_hex(&Sha3Hasher::plain(b"no such tree"));
    let entry = format!(r#"{{"root":"{root}","scroll":"drills","tree_size":{size}}}"#);
    let epoch_root = to_hex(&Sha3Hasher::leaf(entry.as_bytes()));
    let at = "2026-11-23T00:00:00.000000Z";
    let hashed = format!(
        r#"{{"anchored_at":"{at}","epoch":{epoch},"epoch_root":"{epoch_root}","mesh":"vaultmesh-test","prev_anchor_hash":"{prev}","scrolls":[{entry}]}}"#
    );
    let mut r = AnchorRecord {
        epoch,
        mesh: "vaultmesh-test".into(),
        anchored_at: at.into(),
        scrolls: vec![AnchoredScroll {
            scroll: "drills".into(),
            tree_size: size,
            root,
        }],
        epoch_root,
        prev_anchor_hash: prev.into(),
        anchor_hash: to_hex(&Sha3Hasher::plain(hashed.as_bytes())),
        sinks: Vec::new(),
        signature: None,
    };
    r.signature = Some(r.sign_head(signer).unwrap_or_else(|e| panic!("{e}")));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_fails_on_persistent_deferral_vanished_scroll_and_sizes_beyond_2_pow_53() {
    let s = Stack::start(None).await;
    s.submit(5).await;
    s.wait_checkpoint(5).await;
    s.anchor().await;
    let stale_checkpoint = s.get("/v1/scrolls/drills/checkpoint").await;
    let proxy = Proxy::start(s.p.api_addr).await;
    let state = s.dir.join("state.json");
    let out = verify_log(&s.url(), &s.vkey, &state, &[]);
    assert!(passes(&out), "{}", text(&out));

    // Epoch 2 anchors size 9, but the log keeps showing the checkpoint at 5: the first run
    // defers the epoch and records that; the next run, still unable to check it, fails.
    s.submit(4).await;
    s.wait_checkpoint(9).await;
    s.anchor().await;
    proxy.set("/v1/scrolls/drills/checkpoint", Some(stale_checkpoint));
    let out = verify_log(&proxy.url(), &s.vkey, &state, &[]);
    assert!(passes(&out), "{}", text(&out));
    assert!(
        text(&out).contains("NOTE epoch 2: drills anchored at 9, beyond the checkpoint read (5)"),
        "{}",
        text(&out)
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        saved["deferred"]["2"].is_string(),
        "deferral recorded: {saved}"
    );
    assert!(saved["epochs"]["2"].is_null(), "not verified: {saved}");
    let before = std::fs::read_to_string(&state).unwrap_or_default();
    let out = verify_log(&proxy.url(), &s.vkey, &state, &[]);
    fails_with(
        &out,
        "FAIL epoch 2: drills anchored at 9, still beyond the checkpoint (5) after being deferred",
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap_or_default(), before);

    // Shown the real checkpoint, the deferred epoch is checked and the deferral cleared.
    proxy.set("/v1/scrolls/drills/checkpoint", None);
    let out = verify_log(&proxy.url(), &s.vkey, &state, &[]);
    assert!(passes(&out), "{}", text(&out));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        saved["deferred"].as_object().is_some_and(|d| d.is_empty())
            && saved["epochs"]["2"].is_string(),
        "{saved}"
    );

    // A scroll verified before that the listing no longer shows.
    let listing = s.get("/v1/scrolls").await;
    proxy.set("/v1/scrolls", Some(listing_without_drills(&listing)));
    let before = std::fs::read_to_string(&state).unwrap_or_default();
    let out = verify_log(&proxy.url(), &s.vkey, &state, &[]);
    fails_with(
        &out,
        "FAIL drills: verified before and no longer listed by the log",
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap_or_default(), before);
    proxy.set("/v1/scrolls", None);

    // A log serving an anchor at a size beyond 2^53-1 (which the portal itself refuses to
    // parse, so it is served here as modified JSON) fails at once, on a first run, never
    // deferred.
    let latest =
        s.db.store
            .latest_anchor()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no anchor"));
    let huge = huge_record(&s.signer, 3, &latest.record.anchor_hash);
    let page = "/v1/anchors?from=1&limit=1000";
    let mut served: Value =
        serde_json::from_str(&s.get(page).await).unwrap_or_else(|e| panic!("{e}"));
    if let Some(a) = served["anchors"].as_array_mut() {
        a.push(serde_json::to_value(&huge).unwrap_or_else(|e| panic!("{e}")));
    }
    let forged = served.to_string();
    assert!(
        forged.contains("\"tree_size\":9007199254740993"),
        "{forged}"
    );
    proxy.set(page, Some(forged));
    let fresh = s.dir.join("fresh-state.json");
    let out = verify_log(&proxy.url(), &s.vkey, &fresh, &[]);
    fails_with(&out, "9007199254740993");
    assert!(text(&out).contains("FAIL anchors from 1"), "{}", text(&out));
    assert!(!text(&out).contains("NOTE epoch 3"), "{}", text(&out));
    assert!(!text(&out).contains("VERIFIED"), "{}", text(&out));
    assert!(!fresh.exists());
    s.stop().await;
}

/// The `rfc3161` sink result of an anchor record (as JSON).
fn tsa_result(record: &Value) -> Value {
    record["sinks"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["sink"] == "rfc3161" && s["ok"] == true))
        .cloned()
        .unwrap_or_else(|| panic!("not stamped: {record}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsa_tokens_verify_only_by_their_tsa_and_over_their_record() {
    let root = ledger::testing::scratch_dir("cli-verify-tsa");
    let (main, other) = (root.join("main"), root.join("other"));
    make_tsa(&main);
    make_tsa(&other);
    let tsa = serve_tsa(main.clone()).await;
    let s = Stack::start(Some((format!("http://{tsa}/"), main.join("tsa.crt")))).await;
    let main_cert = main.join("tsa.crt");
    let other_cert = other.join("tsa.crt");
    let (main_cert, other_cert) = (path_str(&main_cert), path_str(&other_cert));
    s.submit(3).await;
    s.wait_checkpoint(3).await;
    s.anchor().await;
    s.submit(2).await;
    s.wait_checkpoint(5).await;
    s.anchor().await;

    // The served bundle (anchored in epoch 2) carries a token by the TSA.
    let bundle = s.bundle(1).await;
    let file = s.dir.join("stamped.json");
    write(&file, &bundle);
    let out = verify_bundle(&file, &s.vkey, &["--tsa-cert", main_cert]);
    assert!(passes(&out), "{}", text(&out));
    assert!(
        text(&out).contains("OK epoch 2: RFC 3161 token of"),
        "{}",
        text(&out)
    );
    let out = verify_bundle(&file, &s.vkey, &["--tsa-cert", other_cert]);
    fails_with(&out, "another certificate");

    // Epoch 1's token in epoch 2's place: a valid token, over another record.
    let epoch1: Value =
        serde_json::from_str(&s.get("/v1/anchors/1").await).unwrap_or_else(|e| panic!("{e}"));
    let token1 = tsa_result(&epoch1)["result"]["token"].clone();
    let swap = |token: Value, name: &str| {
        let mut b: Value = serde_json::from_str(&bundle).unwrap_or_else(|e| panic!("{e}"));
        if let Some(sinks) = b["anchor"]["sinks"].as_array_mut() {
            for entry in sinks.iter_mut().filter(|e| e["sink"] == "rfc3161") {
                entry["result"]["token"] = token.clone();
            }
        }
        let path = s.dir.join(name);
        write(&path, &b.to_string());
        path
    };
    let out = verify_bundle(
        &swap(token1.clone(), "other-record.json"),
        &s.vkey,
        &["--tsa-cert", main_cert],
    );
    fails_with(&out, "message imprint is not the epoch's");

    // A token by another TSA over the right imprint.
    let imprint = tsa_result(&serde_json::from_str::<Value>(&bundle).unwrap_or_default()["anchor"])
        ["result"]["imprint_sha256"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let foreign = token_over(&other, &imprint);
    let out = verify_bundle(
        &swap(Value::String(foreign), "other-tsa.json"),
        &s.vkey,
        &["--tsa-cert", main_cert],
    );
    fails_with(&out, "another certificate");
    let out = verify_bundle(&file, &s.vkey, &[]);
    assert!(
        passes(&out),
        "without --tsa-cert, tokens are not checked: {}",
        text(&out)
    );

    // The live log: every epoch's token checked.
    let state = s.dir.join("state.json");
    let out = verify_log(&s.url(), &s.vkey, &state, &["--tsa-cert", main_cert]);
    assert!(passes(&out), "{}", text(&out));
    assert!(
        text(&out).contains("OK epoch 1: RFC 3161 token of")
            && text(&out).contains("OK epoch 2: RFC 3161 token of"),
        "{}",
        text(&out)
    );
    let out = verify_log(&s.url(), &s.vkey, &state, &["--tsa-cert", other_cert]);
    fails_with(&out, "another certificate");

    // The schema owner adds a successful-looking result for epoch 2 holding epoch 1's token.
    let mut forged = tsa_result(&epoch1)["result"].clone();
    forged["token"] = token1;
    let owner = s.db.owner_client().await.unwrap_or_else(|e| panic!("{e}"));
    owner
        .execute(
            "INSERT INTO anchor_sinks (epoch, sink, ok, result) VALUES (2, 'rfc3161', true, $1)",
            &[&forged],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = verify_log(&s.url(), &s.vkey, &state, &["--tsa-cert", main_cert]);
    fails_with(&out, "FAIL ProofChain: epoch 2: rfc3161 result");
    fails_with(&out, "token's message imprint is not the epoch's");
    s.stop().await;
}

/// A tile as served: status, `Cache-Control`, `ETag` and body.
async fn fetch_tile(
    base: &str,
    path: &str,
    if_none_match: Option<&str>,
) -> (u16, String, String, Vec<u8>) {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = if_none_match {
        req = req.header("if-none-match", t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (cache, etag) = (header("cache-control"), header("etag"));
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    (status, cache, etag, body)
}

/// The portal's JSON proof path at `path`.
async fn portal_path(s: &Stack, path: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&s.get(path).await).unwrap_or_else(|e| panic!("{e}"));
    v["path"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {v}"))
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Tiles: a full one is immutable with an ETag (304 on a match), a partial one short-lived,
/// bad coordinates 400 and absent ones 404; proofs computed from tiles are the portal's;
/// `verify log --tiles` passes with every proof endpoint refused, and a forged or malformed
/// tile makes it fail, never pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_cacheable_and_give_the_portals_proofs() {
    use ledger::merkle::{TileId, TileSet};
    let s = Stack::start(None).await;
    s.submit(300).await;
    s.wait_checkpoint(300).await;
    let base = s.url();
    let tiles = "/v1/scrolls/drills/tiles";

    let (status, cache, etag, full) = fetch_tile(&base, &format!("{tiles}/0/0"), None).await;
    assert_eq!((status, full.len()), (200, 256 * 32));
    assert_eq!(cache, "public, max-age=31536000, immutable");
    assert_eq!(etag, format!("\"{}\"", to_hex(&Sha3Hasher::plain(&full))));
    for (held, expected) in [
        (etag.clone(), 304),
        (format!("W/{etag}"), 304),
        (format!("\"x\", {etag}"), 304),
        ("*".to_string(), 304),
        ("\"x\"".to_string(), 200),
    ] {
        let (status, cache, again, body) =
            fetch_tile(&base, &format!("{tiles}/0/0"), Some(&held)).await;
        assert_eq!(status, expected, "If-None-Match: {held}");
        assert_eq!(
            (cache.as_str(), again.as_str()),
            ("public, max-age=31536000, immutable", etag.as_str())
        );
        assert_eq!(body.is_empty(), expected == 304);
    }
    let (status, cache, _, partial) = fetch_tile(&base, &format!("{tiles}/0/1"), None).await;
    assert_eq!(
        (status, partial.len(), cache.as_str()),
        (200, 44 * 32, "public, max-age=5")
    );
    let (status, _, _, top) = fetch_tile(&base, &format!("{tiles}/1/0"), None).await;
    assert_eq!((status, top.len()), (200, 32));
    // A prefix asked by its width is immutable like a full tile.
    for (path, expected) in [
        (format!("{tiles}/0/1?width=10"), &partial[..320]),
        (format!("{tiles}/0/1?width=44"), &partial[..]),
        (format!("{tiles}/0/0?width=256"), &full[..]),
        (format!("{tiles}/1/0?width=1"), &top[..]),
    ] {
        let (status, cache, etag, body) = fetch_tile(&base, &path, None).await;
        assert_eq!((status, body.as_slice()), (200, expected), "{path}");
        assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
        assert_eq!(
            etag,
            format!("\"{}\"", to_hex(&Sha3Hasher::plain(expected)))
        );
    }
    for (path, status, code) in [
        (format!("{tiles}/0/2"), 404, "no_tile"),
        (format!("{tiles}/1/1"), 404, "no_tile"),
        (format!("{tiles}/7/0"), 404, "no_tile"),
        (format!("{tiles}/0/18446744073709551615"), 404, "no_tile"),
        (
            format!("{tiles}/0/18446744073709551616"),
            400,
            "invalid_tile",
        ),
        (format!("{tiles}/8/0"), 400, "invalid_tile"),
        (format!("{tiles}/0/01"), 400, "invalid_tile"),
        (format!("{tiles}/-1/0"), 400, "invalid_tile"),
        (format!("{tiles}/x/0"), 400, "invalid_tile"),
        (format!("{tiles}/0/1?width=45"), 404, "no_tile"),
        (format!("{tiles}/1/0?width=2"), 404, "no_tile"),
        (format!("{tiles}/0/1?width=0"), 400, "invalid_tile"),
        (format!("{tiles}/0/1?width=257"), 400, "invalid_tile"),
        (format!("{tiles}/0/1?width=01"), 400, "invalid_tile"),
        (format!("{tiles}/0/1?width=1&width=2"), 400, "invalid_query"),
        (
            "/v1/scrolls/nope/tiles/0/0".to_string(),
            404,
            "unknown_scroll",
        ),
    ] {
        let (got, cache, _, body) = fetch_tile(&base, &path, None).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            (got, v["error"]["code"].as_str(), cache.as_str()),
            (status, Some(code), "no-store"),
            "{path}"
        );
    }

    // Proofs for every size up to the checkpoint, computed from the three tiles, are the
    // portal's own.
    let mut set = TileSet::new();
    for (level, index, bytes) in [(0, 0, &full), (0, 1, &partial), (1, 0, &top)] {
        set.insert(TileId { level, index }, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, cp) = s.checkpoint().await;
    assert_eq!(status, 200, "{cp}");
    let root = set.root(300).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Some(to_hex(&root).as_str()), cp["root"].as_str());
    let hex = |path: Vec<[u8; 32]>| path.iter().map(to_hex).collect::<Vec<_>>();
    for seq in [0u64, 1, 7, 100, 255, 256, 257, 299] {
        for size in [seq + 1, 256, 257, 288, 300] {
            if size <= seq {
                continue;
            }
            let tiled = set.inclusion(seq, size).unwrap_or_else(|e| panic!("{e}"));
            let served = portal_path(
                &s,
                &format!("/v1/scrolls/drills/proof/inclusion?seq={seq}&tree_size={size}"),
            )
            .await;
            assert_eq!(hex(tiled.path), served, "inclusion {seq} in {size}");
        }
    }
    for from in [1u64, 5, 128, 255, 256, 257, 299, 300] {
        for to in [256u64, 257, 300] {
            if from > to {
                continue;
            }
            let tiled = set.consistency(from, to).unwrap_or_else(|e| panic!("{e}"));
            let served = portal_path(
                &s,
                &format!("/v1/scrolls/drills/proof/consistency?from={from}&to={to}"),
            )
            .await;
            assert_eq!(hex(tiled.path), served, "consistency {from} to {to}");
        }
    }

    // `verify log --tiles` asks no proof endpoint: through a proxy refusing them it passes,
    // where the same run without --tiles fails.
    let proxy = Proxy::start(s.p.api_addr).await;
    proxy.refuse("/v1/scrolls/drills/proof/");
    let state = s.dir.join("tiles-state.json");
    let sampled = ["--token", s.reader.as_str(), "--samples", "40"];
    let out = verify_log(
        &proxy.url(),
        &s.vkey,
        &s.dir.join("no-tiles.json"),
        &sampled,
    );
    fails_with(&out, "refused by the test proxy");
    let mut args = sampled.to_vec();
    args.push("--tiles");
    let out = verify_log(&proxy.url(), &s.vkey, &state, &args);
    assert!(passes(&out), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("OK drills: tiles reproduce the root of checkpoint 300")
            && t.contains("included in checkpoint 300"),
        "{t}"
    );
    s.submit(20).await;
    s.wait_checkpoint(320).await;
    // A cache still holding the partial tiles of checkpoint 300 changes nothing: the
    // verifier asks each partial tile by the width checkpoint 320 gives it.
    proxy.set_bytes(&format!("{tiles}/0/1"), Some(partial.clone()));
    proxy.set_bytes(&format!("{tiles}/1/0"), Some(top.clone()));
    let out = verify_log(&proxy.url(), &s.vkey, &state, &["--tiles"]);
    assert!(
        passes(&out)
            && text(&out).contains("OK drills: checkpoint 320 consistent with 300 seen before"),
        "{}",
        text(&out)
    );

    // Forged tiles fail: a changed entry the root reads, a changed leaf hash that sampled
    // receipts' proofs read, and bytes that are not whole hashes.
    proxy.set_bytes(&format!("{tiles}/0/1"), None);
    let mut forged_top = top.clone();
    forged_top[0] ^= 1;
    proxy.set_bytes(&format!("{tiles}/1/0?width=1"), Some(forged_top));
    let out = verify_log(&proxy.url(), &s.vkey, &s.dir.join("f1.json"), &["--tiles"]);
    fails_with(
        &out,
        "FAIL drills: the tiles' root at size 320 is not the checkpoint's",
    );
    proxy.set_bytes(&format!("{tiles}/1/0?width=1"), None);
    let mut forged_leaves = full.clone();
    forged_leaves[7 * 32] ^= 1;
    proxy.set_bytes(&format!("{tiles}/0/0"), Some(forged_leaves));
    let out = verify_log(&proxy.url(), &s.vkey, &s.dir.join("f2.json"), &args);
    fails_with(&out, "not included in checkpoint 320");
    proxy.set_bytes(&format!("{tiles}/0/0"), Some(vec![0u8; 33]));
    let out = verify_log(&proxy.url(), &s.vkey, &s.dir.join("f3.json"), &args);
    fails_with(&out, "tile 0/0: 256 entries asked, 33 bytes served");
    proxy.set_bytes(&format!("{tiles}/0/0"), Some(vec![0u8; 9000]));
    let out = verify_log(&proxy.url(), &s.vkey, &s.dir.join("f5.json"), &args);
    fails_with(&out, "body over 8192 bytes");
    proxy.set_bytes(&format!("{tiles}/0/0"), None);
    let out = verify_log(&proxy.url(), &s.vkey, &s.dir.join("f4.json"), &args);
    assert!(passes(&out), "{}", text(&out));
    s.stop().await;
}

/// A client that knows a newer checkpoint than the portal's short cache (from a witness, a
/// `?witnessed=K` read or another replica) gets its proofs up to it, not 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_up_to_a_checkpoint_newer_than_the_portals_cache_are_served() {
    let stack = Stack::start(None).await;
    stack.submit(3).await;
    stack.wait_checkpoint(3).await;
    stack.submit(2).await;
    // The checkpoint at 5 is in Postgres; the portal's Redis entry (1 s) still says 3.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stack
        .db
        .store
        .latest_checkpoint("drills")
        .await
        .ok()
        .flatten()
        .map(|c| c.tree_size)
        != Some(5)
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint at 5");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for path in [
        "/v1/scrolls/drills/proof/consistency?from=3&to=5",
        "/v1/scrolls/drills/proof/inclusion?seq=4&tree_size=5",
    ] {
        let (s, body) = ledger::testing::request(stack.p.api_addr, "GET", path, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, 200, "{path}: {body}");
    }
    let (s, body) = ledger::testing::request(
        stack.p.api_addr,
        "GET",
        "/v1/scrolls/drills/proof/consistency?from=3&to=6",
        &[],
        b"",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("beyond_checkpoint"), "{body}");
    stack.stop().await;
}
