#!/usr/bin/env python3
"""Independent VaultMesh proof-bundle verifier, written from SPEC section 3 alone.

Uses only Python's hashlib plus the `rfc8785` (JCS) and `cryptography` (Ed25519) packages,
so it shares no code with the Rust implementation. A bundle's anchor record must carry a
signed ProofChain head by the same key: a self-consistent but unsigned record proves nothing.

    vaultmesh_verify.py BUNDLE.json VKEY      exit 0 if everything verifies, else 1
"""
import base64
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Fail(Exception):
    pass


def sha3(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    return sha3(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha3(b"\x01" + left + right)


def mth(hashes):
    """RFC 6962 Merkle tree hash over leaf hashes (empty tree: SHA3-256 of nothing)."""
    if not hashes:
        return sha3(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def verify_inclusion(lh: bytes, index: int, size: int, path, root: bytes):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise Fail("leaf index beyond tree size")
    fn, sn, r = index, size - 1, lh
    for p in path:
        if sn == 0:
            raise Fail("inclusion path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Fail("inclusion path too short")
    if r != root:
        raise Fail("inclusion proof does not reach the checkpoint root")


def parse_vkey(vkey: str):
    name, key_id_hex, data_b64 = vkey.strip().split("+", 2)
    data = base64.b64decode(data_b64, validate=True)
    if len(data) != 33 or data[0] != 1:
        raise Fail("vkey is not an Ed25519 key")
    pub = data[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + pub).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise Fail("vkey id does not match its key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(pub)


MAX_EXACT_INTEGER = 2**53 - 1


def verify_note(note: str, vkey: str) -> str:
    """C2SP signed-note: returns the body if a valid signature by the vkey is present."""
    name, key_id, pub = parse_vkey(vkey)
    if not isinstance(note, str):
        raise Fail("note is not a string")
    split = note.rfind("\n\n")
    if split < 0:
        raise Fail("note has no signature block")
    body, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise Fail("signature block must end with a newline")
    ok = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Fail("malformed signature line")
        sig_name, sig_b64 = line[2:].split(" ", 1)
        raw = base64.b64decode(sig_b64, validate=True)
        if sig_name == name and raw[:4] == key_id:
            try:
                pub.verify(raw[4:], body.encode())
            except InvalidSignature:
                raise Fail("note signature does not verify")
            ok = True
    if not ok:
        raise Fail("no signature by the trusted key")
    return body


def parse_checkpoint(body: str):
    lines = body[:-1].split("\n")
    if len(lines) != 3:
        raise Fail("checkpoint body must be origin, size, root")
    origin, size, root_b64 = lines
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != 32 or not size.isdigit():
        raise Fail("bad checkpoint size or root")
    return origin, int(size), root


def exact_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_EXACT_INTEGER


def verify_head(rec: dict, vkey: str):
    """Signed ProofChain head: a signed note by the guardian's key whose text is
    `<mesh>/proofchain`, the epoch in decimal and the base64 of the 32-byte anchor_hash."""
    note = rec.get("signature")
    if note is None:
        raise Fail(f"epoch {rec['epoch']}: no signed head (an unsigned record is not evidence)")
    body = verify_note(note, vkey)
    expected = "%s/proofchain\n%d\n%s\n" % (
        rec["mesh"],
        rec["epoch"],
        base64.b64encode(bytes.fromhex(rec["anchor_hash"])).decode(),
    )
    if body != expected:
        raise Fail(f"epoch {rec['epoch']}: the signed head names another record")


def verify_anchor(rec: dict, vkey: str):
    if not exact_int(rec["epoch"]) or not all(exact_int(s["tree_size"]) for s in rec["scrolls"]):
        raise Fail("anchor epoch or tree size is not an integer in [0, 2^53-1]")
    if len(rec["anchor_hash"]) != 64 or bytes.fromhex(rec["anchor_hash"]).hex() != rec["anchor_hash"]:
        raise Fail("anchor_hash is not 64 lowercase hex digits")
    verify_head(rec, vkey)
    rec = dict(rec)
    anchor_hash = rec.pop("anchor_hash")
    rec.pop("sinks", None)
    rec.pop("signature", None)
    if sha3(rfc8785.dumps(rec)).hex() != anchor_hash:
        raise Fail("anchor_hash does not match the record")
    names = [s["scroll"] for s in rec["scrolls"]]
    if names != sorted(names) or len(set(names)) != len(names):
        raise Fail("anchor scrolls are not sorted by name")
    root = mth([leaf_hash(rfc8785.dumps(s)) for s in rec["scrolls"]])
    if root.hex() != rec["epoch_root"]:
        raise Fail("epoch_root does not match the scrolls")


def verify_bundle(bundle: dict, vkey: str) -> str:
    leaf = bundle["leaf"].encode()
    lh = leaf_hash(leaf)
    if lh.hex() != bundle["leaf_hash"]:
        raise Fail("leaf_hash does not match the leaf bytes")
    receipt = json.loads(leaf)
    if set(receipt) != {"scroll", "seq", "type", "payload", "submitted_at", "submitter"}:
        raise Fail("receipt does not have exactly the six fields")
    if rfc8785.dumps(receipt) != leaf:
        raise Fail("leaf bytes are not the RFC 8785 form of the receipt")
    if receipt != bundle["receipt"]:
        raise Fail("receipt copy differs from the leaf")
    origin, size, root = parse_checkpoint(verify_note(bundle["checkpoint"], vkey))
    if not origin.endswith("/" + receipt["scroll"]):
        raise Fail("checkpoint is for another scroll")
    inc = bundle["inclusion"]
    if inc["leaf_index"] != receipt["seq"] or inc["tree_size"] != size:
        raise Fail("inclusion proof is for another position or size")
    verify_inclusion(lh, receipt["seq"], size, [bytes.fromhex(h) for h in inc["path"]], root)
    anchor = bundle.get("anchor")
    if anchor is None:
        return f"{origin}#{receipt['seq']} included at size {size} (not anchored yet)"
    verify_anchor(anchor, vkey)
    entry = next((s for s in anchor["scrolls"] if s["scroll"] == receipt["scroll"]), None)
    mesh = origin[: -len(receipt["scroll"]) - 1]
    if entry is None or entry["tree_size"] != size or entry["root"] != root.hex() or anchor["mesh"] != mesh:
        raise Fail("anchor does not cover this checkpoint")
    return f"{origin}#{receipt['seq']} included at size {size}, anchored in epoch {anchor['epoch']}"


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        bundle = json.load(f)
    vkey = open(argv[2], encoding="utf-8").read() if not "+" in argv[2] else argv[2]
    try:
        print("OK " + verify_bundle(bundle, vkey))
        return 0
    except (Fail, KeyError, ValueError, TypeError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
