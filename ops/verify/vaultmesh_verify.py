#!/usr/bin/env python3
"""Independent VaultMesh proof-bundle verifier, written from SPEC section 3 alone.

Uses only Python's hashlib plus the `rfc8785` (JCS) and `cryptography` (Ed25519) packages,
so it shares no code with the Rust implementation. A bundle's anchor record must carry a
signed ProofChain head by the same key: a self-consistent but unsigned record proves nothing.
Witness cosignatures (C2SP tlog-cosignature/v1, Ed25519) are checked from that spec's
text alone too.

    vaultmesh_verify.py BUNDLE.json VKEY [--witness WVKEY]... [--witness-threshold K]

VKEY (the guardian's signed-note key, algorithm 0x01) and each WVKEY (a witness's
C2SP tlog-cosignature/v1 key, algorithm 0x04) is either the vkey string itself or the
path of a file holding it: a value containing "+" is a key, anything else a file.

With --witness, the bundle's checkpoint must also carry valid cosignatures from at least
K distinct configured witnesses (K defaults to the number of --witness given, and must be
between 1 and that number). Cosignature lines by keys that are not configured are
ignored; a line by a configured witness that does not verify fails the bundle.

Exit status: 0 if everything verifies, 1 if it does not, 2 on a usage error (including
an unreadable or invalid --witness key, a duplicated witness or a bad threshold).
"""
import base64
import hashlib
import json
import sys
import time

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


NOTE_KEY_ALG = 0x01  # signed-note Ed25519 key: the guardian's
COSIGNATURE_KEY_ALG = 0x04  # C2SP tlog-cosignature/v1 Ed25519 key: a witness's


def key_id_for(name: str, alg: int, pub: bytes) -> bytes:
    """Signed-note key ID: the first 4 bytes of SHA-256(name || "\n" || alg || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + pub).digest()[:4]


def _parse_vkey_of(vkey: str, alg: int, what: str):
    if not isinstance(vkey, str):
        raise Fail(f"{what} vkey is not a string")
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise Fail(f"{what} vkey is not name+keyid+key")
    name, key_id_hex, data_b64 = parts
    data = base64.b64decode(data_b64, validate=True)
    if len(data) != 33 or data[0] not in (NOTE_KEY_ALG, COSIGNATURE_KEY_ALG):
        raise Fail(f"{what} vkey is not an Ed25519 key")
    if data[0] != alg:
        if alg == NOTE_KEY_ALG:
            raise Fail("vkey is a witness cosignature key (algorithm 0x04), not a note key")
        raise Fail("witness vkey is a note key (algorithm 0x01), not a cosignature/v1 key (0x04)")
    pub = data[1:]
    key_id = key_id_for(name, alg, pub)
    if key_id.hex() != key_id_hex:
        raise Fail(f"{what} vkey id does not match its key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(pub)


def parse_vkey(vkey: str):
    """The guardian's signed-note vkey (Ed25519, algorithm 0x01): (name, key ID, public key)."""
    return _parse_vkey_of(vkey, NOTE_KEY_ALG, "guardian")


def parse_witness_vkey(vkey: str):
    """A witness's tlog-cosignature/v1 vkey (Ed25519, algorithm 0x04): (name, key ID, public
    key). A note key (0x01) is rejected: it signs notes, not cosignatures."""
    name, key_id, pub = _parse_vkey_of(vkey, COSIGNATURE_KEY_ALG, "witness")
    if not name or any(c.isspace() for c in name):
        raise Fail("witness vkey has an empty name or one with white space")
    return name, key_id, pub


MAX_EXACT_INTEGER = 2**53 - 1


def split_note(note: str):
    """C2SP signed-note: (body, [(name, decoded signature bytes), ...]). The body is the
    text up to the blank line, with its final newline; every line after it must be a
    signature line `\u2014 <name> <base64>`."""
    if not isinstance(note, str):
        raise Fail("note is not a string")
    split = note.rfind("\n\n")
    if split < 0:
        raise Fail("note has no signature block")
    body, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise Fail("signature block must end with a newline")
    lines = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 ") or " " not in line[2:]:
            raise Fail("malformed signature line")
        sig_name, sig_b64 = line[2:].split(" ", 1)
        try:
            lines.append((sig_name, base64.b64decode(sig_b64, validate=True)))
        except ValueError:
            raise Fail("malformed signature line (bad base64)")
    return body, lines


def verify_note(note: str, vkey: str) -> str:
    """C2SP signed-note: returns the body if a valid signature by the vkey is present."""
    name, key_id, pub = parse_vkey(vkey)
    body, lines = split_note(note)
    ok = False
    for sig_name, raw in lines:
        if sig_name == name and raw[:4] == key_id:
            try:
                pub.verify(raw[4:], body.encode())
            except InvalidSignature:
                raise Fail("note signature does not verify")
            ok = True
    if not ok:
        raise Fail("no signature by the trusted key")
    return body


# C2SP tlog-cosignature/v1, Ed25519 only. A cosignature is a signature line on the
# checkpoint note whose decoded bytes are key ID (4) || timestamp (8, big-endian u64 POSIX
# seconds) || Ed25519 signature (64), the signature being over
# "cosignature/v1\ntime <timestamp>\n" followed by the checkpoint body.
COSIGNATURE_LEN = 4 + 8 + 64
MAX_COSIGNATURE_TIME = 2**63 - 1
# Not required by the spec: a cosignature dated more than this many seconds after the
# verifier's clock is refused, as a witness claiming to have seen the checkpoint in the
# future is broken or lying. Pass max_future=None to skip the check.
MAX_FUTURE_SECONDS = 600


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes a tlog-cosignature/v1 signature covers for this checkpoint body."""
    return b"cosignature/v1\ntime %d\n" % timestamp + body.encode()


def _witness_table(witnesses):
    table = {}
    for vkey in witnesses:
        name, key_id, pub = parse_witness_vkey(vkey)
        if (name, key_id) in table:
            raise Fail(f"witness {name} is configured twice")
        table[(name, key_id)] = pub
    return table


def verify_cosignatures(note: str, witnesses, now=None, max_future=MAX_FUTURE_SECONDS):
    """The names of the configured witnesses (vkey strings) with a valid tlog-cosignature/v1
    on the note, each once, in configuration order. Lines whose name and key ID match no
    configured witness are ignored; a matching line that does not verify raises Fail."""
    table = _witness_table(witnesses)
    body, lines = split_note(note)
    if now is None:
        now = time.time()
    cosigned = set()
    for sig_name, raw in lines:
        pub = table.get((sig_name, raw[:4]))
        if pub is None:
            continue
        if len(raw) != COSIGNATURE_LEN:
            raise Fail(f"cosignature by {sig_name} is {len(raw)} bytes, not {COSIGNATURE_LEN}")
        timestamp = int.from_bytes(raw[4:12], "big")
        if timestamp == 0 or timestamp > MAX_COSIGNATURE_TIME:
            raise Fail(f"cosignature by {sig_name} has an invalid timestamp {timestamp}")
        if max_future is not None and timestamp > now + max_future:
            raise Fail(f"cosignature by {sig_name} is dated {timestamp}, in the future")
        try:
            pub.verify(raw[12:], cosignature_message(body, timestamp))
        except InvalidSignature:
            raise Fail(f"cosignature by {sig_name} does not verify")
        cosigned.add((sig_name, raw[:4]))
    return [name for (name, key_id) in table if (name, key_id) in cosigned]


def verify_witness_policy(note: str, witnesses, threshold=None, now=None,
                          max_future=MAX_FUTURE_SECONDS) -> int:
    """Requires valid cosignatures on the note from at least `threshold` (default: all) of
    the configured witnesses; returns how many cosigned."""
    witnesses = list(witnesses)
    if threshold is None:
        threshold = len(witnesses)
    if not witnesses or not 1 <= threshold <= len(witnesses):
        raise Fail(f"witness threshold {threshold} is not between 1 and {len(witnesses)}")
    count = len(verify_cosignatures(note, witnesses, now=now, max_future=max_future))
    if count < threshold:
        raise Fail(f"checkpoint cosigned by {count} of {len(witnesses)} witnesses, "
                   f"threshold {threshold}")
    return count


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


def verify_bundle(bundle: dict, vkey: str, witnesses=(), threshold=None, now=None) -> str:
    """Verifies the bundle against the guardian's vkey and, if witnesses (vkey strings)
    are given, the witness policy on its checkpoint; returns a one-line summary."""
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
    cosigned = ""
    witnesses = list(witnesses)
    if witnesses:
        k = len(witnesses) if threshold is None else threshold
        count = verify_witness_policy(bundle["checkpoint"], witnesses, k, now=now)
        cosigned = f", cosigned by {count} of {len(witnesses)} witnesses (threshold {k})"
    if not origin.endswith("/" + receipt["scroll"]):
        raise Fail("checkpoint is for another scroll")
    inc = bundle["inclusion"]
    if inc["leaf_index"] != receipt["seq"] or inc["tree_size"] != size:
        raise Fail("inclusion proof is for another position or size")
    verify_inclusion(lh, receipt["seq"], size, [bytes.fromhex(h) for h in inc["path"]], root)
    anchor = bundle.get("anchor")
    if anchor is None:
        return f"{origin}#{receipt['seq']} included at size {size} (not anchored yet){cosigned}"
    verify_anchor(anchor, vkey)
    entry = next((s for s in anchor["scrolls"] if s["scroll"] == receipt["scroll"]), None)
    mesh = origin[: -len(receipt["scroll"]) - 1]
    if entry is None or entry["tree_size"] != size or entry["root"] != root.hex() or anchor["mesh"] != mesh:
        raise Fail("anchor does not cover this checkpoint")
    return (f"{origin}#{receipt['seq']} included at size {size}, "
            f"anchored in epoch {anchor['epoch']}{cosigned}")


class Usage(Exception):
    pass


def parse_args(argv):
    """(bundle path, vkey argument, [witness arguments], threshold or None); Usage if bad."""
    positional, witnesses, threshold = [], [], None
    args = iter(argv[1:])
    options = True
    for arg in args:
        if options and arg == "--":
            options = False
        elif options and arg.startswith("--"):
            opt, eq, value = arg.partition("=")
            if opt not in ("--witness", "--witness-threshold"):
                raise Usage(f"unknown option {opt}")
            if not eq:
                value = next(args, None)
                if value is None:
                    raise Usage(f"{opt} needs a value")
            if opt == "--witness":
                witnesses.append(value)
            elif threshold is not None:
                raise Usage("--witness-threshold given twice")
            elif not (value.isascii() and value.isdigit()):
                raise Usage(f"--witness-threshold {value!r} is not a number")
            else:
                threshold = int(value)
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise Usage("expected BUNDLE and VKEY")
    if threshold is not None and not witnesses:
        raise Usage("--witness-threshold without --witness")
    if witnesses and not 1 <= (len(witnesses) if threshold is None else threshold) <= len(witnesses):
        raise Usage(f"--witness-threshold must be between 1 and {len(witnesses)}")
    return positional[0], positional[1], witnesses, threshold


def load_vkey(arg: str) -> str:
    """A vkey argument: the key itself if it contains "+", else the path of a file holding it."""
    return open(arg, encoding="utf-8").read() if not "+" in arg else arg


def main(argv):
    try:
        bundle_path, vkey_arg, witness_args, threshold = parse_args(argv)
        witnesses = []
        for arg in witness_args:
            try:
                witnesses.append(load_vkey(arg))
            except (OSError, UnicodeDecodeError) as e:
                raise Usage(f"cannot read --witness {arg}: {e}")
        try:
            _witness_table(witnesses)
        except (Fail, ValueError) as e:
            raise Usage(f"bad --witness key: {e}")
    except Usage as e:
        print(f"usage error: {e}", file=sys.stderr)
        print(__doc__, file=sys.stderr)
        return 2
    with open(bundle_path, encoding="utf-8") as f:
        bundle = json.load(f)
    vkey = load_vkey(vkey_arg)
    try:
        print("OK " + verify_bundle(bundle, vkey, witnesses, threshold))
        return 0
    except (Fail, KeyError, ValueError, TypeError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
