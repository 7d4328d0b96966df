#!/usr/bin/env python3
"""Computes docs/formats.md's worked example from SPEC section 3 with Python alone
(hashlib, rfc8785, cryptography) and prints it as JSON. The Rust test suite compares
its own output with this, byte for byte."""
import base64
import hashlib
import json

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vaultmesh_verify import leaf_hash, mth, node_hash, sha3

MESH = "example-mesh"
KEY_NAME = "example-mesh/guardian"
SEED = hashlib.sha256(b"vaultmesh worked example").digest()

receipts = [
    {"scroll": "drills", "seq": i, "type": "drill_completed",
     "payload": {"drill": f"fire-{i}", "ok": i != 1, "participants": 12 + i, "score": 0.5 + i},
     "submitted_at": f"2026-11-23T12:00:0{i}.000000Z", "submitter": "key_0a1b2c3d4e5f"}
    for i in range(3)
]
leaves = [rfc8785.dumps(r) for r in receipts]
hashes = [leaf_hash(l) for l in leaves]
root = mth(hashes)

key = Ed25519PrivateKey.from_private_bytes(SEED)
pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
key_id = hashlib.sha256(KEY_NAME.encode() + b"\n\x01" + pub).digest()[:4]
vkey_data = base64.b64encode(bytes([1]) + pub).decode()
vkey = f"{KEY_NAME}+{key_id.hex()}+{vkey_data}"
body = f"{MESH}/drills\n3\n{base64.b64encode(root).decode()}\n"
sig = key.sign(body.encode())
note = body + "\n\u2014 " + KEY_NAME + " " + base64.b64encode(key_id + sig).decode() + "\n"

entry = {"scroll": "drills", "tree_size": 3, "root": root.hex()}
record = {"epoch": 1, "mesh": MESH, "anchored_at": "2026-11-23T12:10:00.000000Z",
          "scrolls": [entry], "epoch_root": mth([leaf_hash(rfc8785.dumps(entry))]).hex(),
          "prev_anchor_hash": "0" * 64}
record["anchor_hash"] = sha3(rfc8785.dumps(record)).hex()
head = f"{MESH}/proofchain\n1\n{base64.b64encode(bytes.fromhex(record['anchor_hash'])).decode()}\n"
head_sig = key.sign(head.encode())
head_note = head + "\n\u2014 " + KEY_NAME + " " + base64.b64encode(key_id + head_sig).decode() + "\n"

print(json.dumps({
    "leaves": [l.decode() for l in leaves],
    "leaf_hashes": [h.hex() for h in hashes],
    "node_01": node_hash(hashes[0], hashes[1]).hex(),
    "root": root.hex(),
    "empty_root": sha3(b"").hex(),
    "inclusion_1_of_3": [hashes[0].hex(), hashes[2].hex()],
    "vkey": vkey,
    "checkpoint": note,
    "anchor_record": record,
    "anchor_head": head_note,
}, indent=2, ensure_ascii=False))
