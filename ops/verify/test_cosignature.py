"""Tests for vaultmesh_verify.py's witness policy (C2SP tlog-cosignature/v1, Ed25519).

Builds its own vectors with `cryptography`: a guardian note key (algorithm 0x01) signs a
checkpoint, witness keys (algorithm 0x04) cosign it. Run from this directory:

    python3 -m unittest test_cosignature -v
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
import unittest

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import vaultmesh_verify as vv

EM = "\u2014"
TS = 1_700_000_000  # a fixed past time for the cosignatures below


class Key:
    """An Ed25519 signer with a signed-note name, algorithm byte, key ID and vkey."""

    def __init__(self, name, alg, seed=None):
        self.name, self.alg = name, alg
        self.priv = (Ed25519PrivateKey.from_private_bytes(seed) if seed is not None
                     else Ed25519PrivateKey.generate())
        self.pub = self.priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # Computed here independently of vaultmesh_verify.key_id_for.
        self.key_id = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + self.pub).digest()[:4]
        self.vkey = "%s+%s+%s" % (name, self.key_id.hex(),
                                  base64.b64encode(bytes([alg]) + self.pub).decode())


def sig_line(name, blob):
    return "%s %s %s\n" % (EM, name, base64.b64encode(blob).decode())


def note_sign(key, body):
    """The guardian's signed note: body, blank line, its signature line."""
    return body + "\n" + sig_line(key.name, key.key_id + key.priv.sign(body.encode()))


def cosign_blob(key, body, ts, message=None):
    msg = b"cosignature/v1\ntime %d\n" % ts + body.encode() if message is None else message
    return key.key_id + ts.to_bytes(8, "big") + key.priv.sign(msg)


def cosign(key, body, ts=TS):
    return sig_line(key.name, cosign_blob(key, body, ts))


# RFC 6962 audit path, written here for the test only.
def audit_path(m, hashes):
    if len(hashes) <= 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return audit_path(m, hashes[:k]) + [vv.mth(hashes[k:])]
    return audit_path(m - k, hashes[k:]) + [vv.mth(hashes[:k])]


def make_tree(size=5):
    receipts = [{"scroll": "scroll", "seq": i, "type": "t", "payload": {"n": i},
                 "submitted_at": "2026-01-01T00:00:0%d.000000Z" % i, "submitter": "key_x"}
                for i in range(size)]
    leaves = [rfc8785.dumps(r) for r in receipts]
    hashes = [vv.leaf_hash(l) for l in leaves]
    return receipts, leaves, hashes, vv.mth(hashes)


class CosignatureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.guardian = Key("mesh/guardian", 0x01)
        cls.w = [Key("witness.example/w%d" % i, 0x04) for i in (1, 2, 3)]
        cls.receipts, cls.leaves, cls.hashes, cls.root = make_tree(5)
        # The checkpoint body is `mesh/scroll\n5\n<base64 32 bytes>\n`.
        cls.body = "mesh/scroll\n5\n%s\n" % base64.b64encode(cls.root).decode()
        cls.signed = note_sign(cls.guardian, cls.body)

    def vkeys(self, n=3):
        return [k.vkey for k in self.w[:n]]

    def note(self, *lines):
        return self.signed + "".join(lines)

    def bundle(self, note, seq=2):
        return {
            "leaf": self.leaves[seq].decode(),
            "leaf_hash": self.hashes[seq].hex(),
            "receipt": self.receipts[seq],
            "checkpoint": note,
            "inclusion": {"leaf_index": seq, "tree_size": 5,
                          "path": [h.hex() for h in audit_path(seq, self.hashes)]},
        }

    # --- the policy ---------------------------------------------------------------

    def test_two_of_three_passes(self):
        note = self.note(cosign(self.w[0], self.body), cosign(self.w[1], self.body))
        self.assertEqual(vv.verify_cosignatures(note, self.vkeys()),
                         [self.w[0].name, self.w[1].name])
        self.assertEqual(vv.verify_witness_policy(note, self.vkeys(), 2), 2)
        # The guardian's signature still verifies with cosignature lines after it.
        self.assertEqual(vv.verify_note(note, self.guardian.vkey), self.body)
        out = vv.verify_bundle(self.bundle(note), self.guardian.vkey, self.vkeys(), 2)
        self.assertEqual(out, "mesh/scroll#2 included at size 5 (not anchored yet), "
                              "cosigned by 2 of 3 witnesses (threshold 2)")

    def test_three_of_three_fails_with_two(self):
        note = self.note(cosign(self.w[0], self.body), cosign(self.w[1], self.body))
        with self.assertRaisesRegex(vv.Fail, "cosigned by 2 of 3"):
            vv.verify_witness_policy(note, self.vkeys(), 3)
        with self.assertRaises(vv.Fail):
            vv.verify_witness_policy(note, self.vkeys())  # threshold defaults to all
        with self.assertRaises(vv.Fail):
            vv.verify_bundle(self.bundle(note), self.guardian.vkey, self.vkeys())

    def test_altered_time_fails(self):
        blob = bytearray(cosign_blob(self.w[0], self.body, TS))
        blob[4:12] = (TS + 1).to_bytes(8, "big")
        note = self.note(sig_line(self.w[0].name, bytes(blob)), cosign(self.w[1], self.body))
        with self.assertRaisesRegex(vv.Fail, "does not verify"):
            vv.verify_cosignatures(note, self.vkeys())

    def test_other_body_fails(self):
        other = "mesh/scroll\n6\n%s\n" % base64.b64encode(bytes(32)).decode()
        note = self.note(cosign(self.w[0], other), cosign(self.w[1], self.body))
        with self.assertRaisesRegex(vv.Fail, "does not verify"):
            vv.verify_witness_policy(note, self.vkeys(), 1)

    def test_unknown_witness_ignored(self):
        stranger = Key("witness.example/stranger", 0x04)
        note = self.note(cosign(stranger, self.body), cosign(self.w[0], self.body),
                         sig_line("someone/else", b"\x00" * 10))
        self.assertEqual(vv.verify_cosignatures(note, self.vkeys()), [self.w[0].name])
        self.assertEqual(vv.verify_witness_policy(note, self.vkeys(), 1), 1)

    def test_right_name_wrong_key_id_ignored(self):
        blob = cosign_blob(self.w[0], self.body, TS)
        wrong = bytes([blob[0] ^ 0xFF]) + blob[1:]
        # A broken blob of the wrong length too: not by a configured key, so not looked at.
        note = self.note(sig_line(self.w[0].name, wrong), sig_line(self.w[0].name, wrong[:20]),
                         cosign(self.w[1], self.body))
        self.assertEqual(vv.verify_cosignatures(note, self.vkeys()), [self.w[1].name])
        # w2's key ID under w1's name is not w1 either.
        note = self.note(sig_line(self.w[0].name, cosign_blob(self.w[1], self.body, TS)))
        self.assertEqual(vv.verify_cosignatures(note, self.vkeys()), [])

    def test_same_witness_twice_counts_once(self):
        note = self.note(cosign(self.w[0], self.body, TS), cosign(self.w[0], self.body, TS + 5))
        self.assertEqual(vv.verify_cosignatures(note, self.vkeys()), [self.w[0].name])
        with self.assertRaisesRegex(vv.Fail, "cosigned by 1 of 2"):
            vv.verify_witness_policy(note, self.vkeys(2), 2)
        # Configuring the same witness twice cannot double-count it either.
        with self.assertRaisesRegex(vv.Fail, "configured twice"):
            vv.verify_witness_policy(note, [self.w[0].vkey, self.w[0].vkey], 2)

    def test_note_key_is_not_a_witness_key(self):
        with self.assertRaisesRegex(vv.Fail, "note key"):
            vv.parse_witness_vkey(self.guardian.vkey)
        with self.assertRaises(vv.Fail):
            vv.verify_cosignatures(self.signed, [self.guardian.vkey])
        # An 0x01 key with a witness's name and key (key ID computed over 0x01) too.
        as_note_key = Key(self.w[0].name, 0x01, seed=None)
        with self.assertRaises(vv.Fail):
            vv.parse_witness_vkey(as_note_key.vkey)

    def test_witness_key_is_not_a_guardian_key(self):
        with self.assertRaisesRegex(vv.Fail, "cosignature key"):
            vv.parse_vkey(self.w[0].vkey)
        note = self.note(cosign(self.w[0], self.body))
        with self.assertRaises(vv.Fail):
            vv.verify_note(note, self.w[0].vkey)

    def test_vkey_with_wrong_key_id_rejected(self):
        name, _, data = self.w[0].vkey.split("+", 2)
        with self.assertRaisesRegex(vv.Fail, "id does not match"):
            vv.parse_witness_vkey("%s+%s+%s" % (name, "00000000", data))

    def test_zero_timestamp_rejected(self):
        note = self.note(cosign(self.w[0], self.body, 0))
        with self.assertRaisesRegex(vv.Fail, "invalid timestamp"):
            vv.verify_cosignatures(note, self.vkeys())

    def test_timestamp_above_2_63_rejected(self):
        note = self.note(cosign(self.w[0], self.body, 2**63))
        with self.assertRaisesRegex(vv.Fail, "invalid timestamp"):
            vv.verify_cosignatures(note, self.vkeys(), max_future=None)

    def test_future_timestamp_rejected(self):
        now = 1_800_000_000
        soon = self.note(cosign(self.w[0], self.body, now + 60))
        self.assertEqual(vv.verify_cosignatures(soon, self.vkeys(), now=now), [self.w[0].name])
        late = self.note(cosign(self.w[0], self.body, now + 3600))
        with self.assertRaisesRegex(vv.Fail, "future"):
            vv.verify_cosignatures(late, self.vkeys(), now=now)
        self.assertEqual(vv.verify_cosignatures(late, self.vkeys(), now=now, max_future=None),
                         [self.w[0].name])

    def test_wrong_length_blob_fails(self):
        blob = cosign_blob(self.w[0], self.body, TS)
        for bad in (blob + b"\x00", blob[:-1], blob[:12], blob[:4]):
            note = self.note(sig_line(self.w[0].name, bad), cosign(self.w[1], self.body))
            with self.assertRaisesRegex(vv.Fail, "bytes, not 76"):
                vv.verify_cosignatures(note, self.vkeys())

    def test_signature_without_header_fails(self):
        # Signed over the body alone (as a plain note signature would be), and over
        # "time ...\n" + body without the cosignature/v1 line.
        for message in (self.body.encode(), b"time %d\n" % TS + self.body.encode()):
            blob = cosign_blob(self.w[0], self.body, TS, message=message)
            with self.assertRaisesRegex(vv.Fail, "does not verify"):
                vv.verify_cosignatures(self.note(sig_line(self.w[0].name, blob)), self.vkeys())

    def test_malformed_base64_fails(self):
        note = self.note("%s %s not-base64!\n" % (EM, self.w[0].name))
        with self.assertRaisesRegex(vv.Fail, "bad base64"):
            vv.verify_cosignatures(note, self.vkeys())

    def test_known_answer(self):
        w = Key("witness.example/w1", 0x04, seed=bytes(range(32)))
        body = ("example.com/behind-the-sofa\n20852163\n"
                "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
        line = cosign(w, body, 1679315147)
        vkey = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
        expected = ("\u2014 witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZ"
                    "VUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==")
        self.assertEqual(w.vkey, vkey)
        self.assertEqual(line, expected + "\n")
        name, key_id, _ = vv.parse_witness_vkey(vkey)
        self.assertEqual((name, key_id.hex()), ("witness.example/w1", "e75f6532"))
        # The literal verifies through the verifier (with a stand-in signature line first).
        note = body + "\n" + sig_line("example.com/log", b"\x01" * 68) + expected + "\n"
        self.assertEqual(vv.verify_cosignatures(note, [vkey]), ["witness.example/w1"])
        self.assertEqual(vv.cosignature_message(body, 1679315147),
                         b"cosignature/v1\ntime 1679315147\n" + body.encode())

    # --- the command line ---------------------------------------------------------

    def run_main(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = vv.main(["vaultmesh_verify.py", *args])
        return code, out.getvalue(), err.getvalue()

    def test_command_line(self):
        note = self.note(cosign(self.w[0], self.body), cosign(self.w[1], self.body))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bundle.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.bundle(note), f)
            w3 = os.path.join(d, "w3.vkey")
            with open(w3, "w", encoding="utf-8") as f:
                f.write(self.w[2].vkey + "\n")
            gk = os.path.join(d, "guardian.vkey")
            with open(gk, "w", encoding="utf-8") as f:
                f.write(self.guardian.vkey + "\n")
            g, w1, w2 = self.guardian.vkey, self.w[0].vkey, self.w[1].vkey

            # The positional form, unchanged.
            code, out, _ = self.run_main(path, g)
            self.assertEqual((code, out), (0, "OK mesh/scroll#2 included at size 5 (not anchored yet)\n"))
            self.assertEqual(self.run_main(path, gk)[0], 0)
            self.assertEqual(self.run_main(path, w1)[0], 1)  # a witness key is no guardian key

            code, out, _ = self.run_main(path, g, "--witness", w1, "--witness", w2,
                                         "--witness", w3, "--witness-threshold", "2")
            self.assertEqual(code, 0)
            self.assertTrue(out.endswith(", cosigned by 2 of 3 witnesses (threshold 2)\n"), out)
            code, out, _ = self.run_main(path, gk, "--witness=" + w1, "--witness-threshold=1")
            self.assertEqual((code, out.endswith("cosigned by 1 of 1 witnesses (threshold 1)\n")),
                             (0, True))
            code, _, err = self.run_main(path, g, "--witness", w1, "--witness", w2,
                                         "--witness", w3)
            self.assertEqual(code, 1)
            self.assertIn("FAILED: checkpoint cosigned by 2 of 3 witnesses, threshold 3", err)
            self.assertEqual(self.run_main(path, g, "--witness", w3)[0], 1)

            usage = [
                (),
                (path,),
                (path, g, "extra"),
                (path, g, "--witness-threshold", "1"),
                (path, g, "--witness", w1, "--witness-threshold", "2"),
                (path, g, "--witness", w1, "--witness-threshold", "0"),
                (path, g, "--witness", w1, "--witness-threshold", "-1"),
                (path, g, "--witness", w1, "--witness-threshold", "x"),
                (path, g, "--witness"),
                (path, g, "--witnesses", w1),
                (path, g, "--witness", g),  # a note key as a witness key
                (path, g, "--witness", w1, "--witness", w1),
                (path, g, "--witness", os.path.join(d, "missing.vkey")),
            ]
            for args in usage:
                code, out, err = self.run_main(*args)
                self.assertEqual(code, 2, args)
                self.assertEqual(out, "")
                self.assertIn("vaultmesh_verify.py BUNDLE.json VKEY", err)


if __name__ == "__main__":
    unittest.main()
