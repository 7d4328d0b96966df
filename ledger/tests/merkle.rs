//! Merkle roots and proofs against a plain recursive RFC 6962 reference, the classic
//! RFC 6962 SHA-256 vectors, and every family of corrupted proof.

use ledger::hash::{Hash, Sha3Hasher, TreeHasher};
use ledger::merkle::{verify_consistency, verify_inclusion, MemoryTree, ProofError};
use ledger::testing::Rng;
use sha2::Sha256;
use sha3::Sha3_256;

type H3 = TreeHasher<Sha3_256>;

/// RFC 6962 §2.1 MTH, written directly from the definition.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => H3::empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            H3::node(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1.1 PATH(m, D[n]).
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = reference_path(m, &leaves[..k]);
        p.push(reference_root(&leaves[k..]));
        p
    } else {
        let mut p = reference_path(m - k, &leaves[k..]);
        p.push(reference_root(&leaves[..k]));
        p
    }
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b).
fn reference_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![reference_root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut p = reference_subproof(m, &leaves[..k], complete);
        p.push(reference_root(&leaves[k..]));
        p
    } else {
        let mut p = reference_subproof(m - k, &leaves[k..], false);
        p.push(reference_root(&leaves[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| Sha3Hasher::leaf(&(i as u64).to_be_bytes()))
        .collect()
}

#[test]
fn roots_and_proofs_match_the_reference_for_sizes_0_to_2000() {
    let all = leaves(2000);
    let tree = MemoryTree::<Sha3_256>::new(all.clone());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for n in 0..=2000usize {
        let root = tree.root(n as u64).unwrap_or_default();
        assert_eq!(root, reference_root(&all[..n]), "root of {n}");
        // Proofs are O(n) in the reference, so they are checked at every size up to 64 and at
        // a dense sample above it (every 13th size, and each power of two and its neighbours).
        let edge = |x: usize| {
            x.is_power_of_two() || (x + 1).is_power_of_two() || (x - 1).is_power_of_two()
        };
        if n > 64 && n % 13 != 0 && !edge(n) {
            continue;
        }
        if n == 0 {
            assert_eq!(root, H3::empty_root());
            assert_eq!(
                verify_consistency::<Sha3_256>(0, 0, &[], &root, &root),
                Err(ProofError::FromEmptyTree)
            );
            continue;
        }
        let mut indices = vec![0, n - 1, rng.below(n as u64) as usize];
        if n <= 40 {
            indices = (0..n).collect();
        }
        for m in indices {
            let path = tree.inclusion(m as u64, n as u64).unwrap_or_default();
            assert_eq!(path, reference_path(m, &all[..n]), "path {m} of {n}");
            assert_eq!(
                verify_inclusion::<Sha3_256>(&all[m], m as u64, n as u64, &path, &root),
                Ok(()),
                "verify {m} of {n}"
            );
        }
        let mut olds = vec![0, 1, n, n / 2, rng.below(n as u64 + 1) as usize];
        if n <= 40 {
            olds = (0..=n).collect();
        }
        for m in olds {
            let path = tree.consistency(m as u64, n as u64).unwrap_or_default();
            let expected = if m == 0 {
                Vec::new()
            } else {
                reference_subproof(m, &all[..n], true)
            };
            assert_eq!(path, expected, "consistency {m}->{n}");
            let old_root = tree.root(m as u64).unwrap_or_default();
            let want = if m == 0 {
                Err(ProofError::FromEmptyTree)
            } else {
                Ok(())
            };
            assert_eq!(
                verify_consistency::<Sha3_256>(m as u64, n as u64, &path, &old_root, &root),
                want,
                "verify consistency {m}->{n}"
            );
        }
    }
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// Every corrupted variant of a valid inclusion proof must be rejected.
fn assert_inclusion_corruptions_fail(tree: &MemoryTree<Sha3_256>, all: &[Hash], m: u64, n: u64) {
    let root = tree.root(n).unwrap_or_default();
    let path = tree.inclusion(m, n).unwrap_or_default();
    let leaf = all[m as usize];
    let ok = |leaf: &Hash, m: u64, n: u64, p: &[Hash], r: &Hash| {
        verify_inclusion::<Sha3_256>(leaf, m, n, p, r).is_ok()
    };
    assert!(ok(&leaf, m, n, &path, &root));
    let junk = Sha3Hasher::leaf(b"junk");
    let mut variants: Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> = Vec::new();
    for (name, mm) in [("index+1", m + 1), ("index-1", m.wrapping_sub(1))] {
        variants.push((name.into(), leaf, mm, n, path.clone(), root));
    }
    // size±1 is deliberately absent: RFC 9162 paths do not bind the size (the signed
    // checkpoint does), e.g. leaf 0's path in a 3-tree also verifies as a 4-tree path.
    for (name, nn) in [("size*2", n * 2), ("size/2", n / 2)] {
        variants.push((name.into(), leaf, m, nn, path.clone(), root));
    }
    for i in 0..path.len() {
        for bit in [0, 77, 255] {
            let mut p = path.clone();
            p[i] = flip(&p[i], bit);
            variants.push((format!("node {i} bit {bit}"), leaf, m, n, p, root));
        }
    }
    if !path.is_empty() {
        variants.push((
            "truncated".into(),
            leaf,
            m,
            n,
            path[..path.len() - 1].to_vec(),
            root,
        ));
        variants.push(("empty path".into(), leaf, m, n, Vec::new(), root));
    }
    let mut extended = path.clone();
    extended.push(junk);
    variants.push(("extended".into(), leaf, m, n, extended, root));
    let mut prepended = vec![junk];
    prepended.extend_from_slice(&path);
    variants.push(("prepended".into(), leaf, m, n, prepended, root));
    variants.push((
        "wrong root".into(),
        leaf,
        m,
        n,
        path.clone(),
        flip(&root, 3),
    ));
    variants.push((
        "other size root".into(),
        leaf,
        m,
        n,
        path.clone(),
        tree.root(n - 1).unwrap_or_default(),
    ));
    variants.push((
        "wrong leaf".into(),
        flip(&leaf, 9),
        m,
        n,
        path.clone(),
        root,
    ));
    variants.push(("leaf as root".into(), root, m, n, path.clone(), leaf));
    for (name, l, mm, nn, p, r) in variants {
        if mm == m && nn == n && p == path && r == root && l == leaf {
            continue;
        }
        assert!(
            !ok(&l, mm, nn, &p, &r),
            "accepted corrupted inclusion ({name}) for {m} of {n}"
        );
    }
}

/// Every corrupted variant of a valid consistency proof must be rejected.
fn assert_consistency_corruptions_fail(tree: &MemoryTree<Sha3_256>, m: u64, n: u64) {
    let old = tree.root(m).unwrap_or_default();
    let new = tree.root(n).unwrap_or_default();
    let path = tree.consistency(m, n).unwrap_or_default();
    let ok = |a: u64, b: u64, p: &[Hash], r1: &Hash, r2: &Hash| {
        verify_consistency::<Sha3_256>(a, b, p, r1, r2).is_ok()
    };
    assert!(ok(m, n, &path, &old, &new));
    let junk = Sha3Hasher::leaf(b"junk");
    let mut variants: Vec<(String, u64, u64, Vec<Hash>, Hash, Hash)> = vec![
        ("from+1".into(), m + 1, n, path.clone(), old, new),
        ("from-1".into(), m - 1, n, path.clone(), old, new),
        // to±1 is absent for the same reason as size±1 for inclusion.
        ("to*2".into(), m, n * 2, path.clone(), old, new),
        ("from/2".into(), m / 2, n, path.clone(), old, new),
        ("swapped roots".into(), m, n, path.clone(), new, old),
        ("swapped sizes".into(), n, m, path.clone(), new, old),
        (
            "wrong old root".into(),
            m,
            n,
            path.clone(),
            flip(&old, 1),
            new,
        ),
        (
            "wrong new root".into(),
            m,
            n,
            path.clone(),
            old,
            flip(&new, 200),
        ),
        ("empty path".into(), m, n, Vec::new(), old, new),
    ];
    for i in 0..path.len() {
        for bit in [0, 128, 255] {
            let mut p = path.clone();
            p[i] = flip(&p[i], bit);
            variants.push((format!("node {i} bit {bit}"), m, n, p, old, new));
        }
    }
    if !path.is_empty() {
        variants.push((
            "truncated".into(),
            m,
            n,
            path[..path.len() - 1].to_vec(),
            old,
            new,
        ));
    }
    let mut extended = path.clone();
    extended.push(junk);
    variants.push(("extended".into(), m, n, extended, old, new));
    let mut prepended = vec![junk];
    prepended.extend_from_slice(&path);
    variants.push(("prepended".into(), m, n, prepended, old, new));
    for (name, a, b, p, r1, r2) in variants {
        if a == m && b == n && p == path && r1 == old && r2 == new {
            continue;
        }
        assert!(
            !ok(a, b, &p, &r1, &r2),
            "accepted corrupted consistency ({name}) {m}->{n}"
        );
    }
}

#[test]
fn every_corruption_family_is_rejected() {
    let all = leaves(1100);
    let tree = MemoryTree::<Sha3_256>::new(all.clone());
    for n in [
        2u64, 3, 4, 5, 7, 8, 9, 16, 17, 31, 100, 255, 256, 257, 1000, 1024, 1025,
    ] {
        for m in [0, 1, n / 2, n - 2, n - 1] {
            if m < n {
                assert_inclusion_corruptions_fail(&tree, &all, m, n);
            }
            if m >= 1 && m < n {
                assert_consistency_corruptions_fail(&tree, m, n);
            }
        }
    }
}

#[test]
fn single_leaf_and_empty_edge_cases() {
    let all = leaves(1);
    let tree = MemoryTree::<Sha3_256>::new(all.clone());
    let root = tree.root(1).unwrap_or_default();
    assert_eq!(root, all[0]);
    assert!(verify_inclusion::<Sha3_256>(&all[0], 0, 1, &[], &root).is_ok());
    assert!(verify_inclusion::<Sha3_256>(&all[0], 0, 1, &[root], &root).is_err());
    assert!(verify_inclusion::<Sha3_256>(&all[0], 0, 0, &[], &root).is_err());
    assert!(verify_inclusion::<Sha3_256>(&all[0], 1, 1, &[], &root).is_err());
    let empty = H3::empty_root();
    assert!(verify_consistency::<Sha3_256>(0, 1, &[], &empty, &root).is_err());
    assert!(verify_consistency::<Sha3_256>(0, 1, &[], &root, &root).is_err());
    assert!(verify_consistency::<Sha3_256>(0, 1, &[root], &empty, &root).is_err());
    assert!(verify_consistency::<Sha3_256>(1, 1, &[], &root, &root).is_ok());
    assert!(verify_consistency::<Sha3_256>(1, 1, &[], &root, &empty).is_err());
    assert!(verify_consistency::<Sha3_256>(1, 1, &[root], &root, &root).is_err());
}

/// The eight RFC 6962 test inputs (hex), leaves of the SHA-256 vector tree.
const RFC6962_DATA: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the first 0..=8 of those leaves, computed independently with Python's hashlib
/// (sha256) from the RFC 6962 MTH definition.
const RFC6962_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn sha256_mode_reproduces_rfc6962_vectors() {
    let (data, expected) = (RFC6962_DATA, RFC6962_ROOTS);
    let hashed: Vec<Hash> = data
        .iter()
        .map(|d| TreeHasher::<Sha256>::leaf(&hex::decode(d).unwrap_or_default()))
        .collect();
    let tree = MemoryTree::<Sha256>::new(hashed.clone());
    for (n, want) in expected.iter().enumerate() {
        assert_eq!(
            hex::encode(tree.root(n as u64).unwrap_or_default()),
            *want,
            "size {n}"
        );
        for (m, leaf) in hashed.iter().enumerate().take(n) {
            let path = tree.inclusion(m as u64, n as u64).unwrap_or_default();
            let root = tree.root(n as u64).unwrap_or_default();
            assert!(verify_inclusion::<Sha256>(leaf, m as u64, n as u64, &path, &root).is_ok());
        }
        for m in 1..=n {
            let p = tree.consistency(m as u64, n as u64).unwrap_or_default();
            let (a, b) = (
                tree.root(m as u64).unwrap_or_default(),
                tree.root(n as u64).unwrap_or_default(),
            );
            assert!(verify_consistency::<Sha256>(m as u64, n as u64, &p, &a, &b).is_ok());
        }
    }
}

#[test]
fn rs_merkle_tiles_agree_with_the_reference() {
    let all = leaves(700);
    for n in [1usize, 2, 3, 255, 256, 257, 700] {
        assert_eq!(
            ledger::hash::subtree_root::<Sha3_256>(&all[..n]),
            reference_root(&all[..n])
        );
    }
}

/// RFC 9162 §2.1.4.1 consistency paths over the RFC 6962 SHA-256 leaves above, produced by a
/// separate Python implementation of SUBPROOF (and accepted there by its own §2.1.4.2 check).
const CONSISTENCY_VECTORS: [(u64, u64, &[&str]); 10] = [
    (
        1,
        2,
        &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    ),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        3,
        7,
        &[
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
        ],
    ),
    (
        4,
        7,
        &["837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e"],
    ),
    (
        4,
        8,
        &["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        7,
        8,
        &[
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn unhex(s: &str) -> Hash {
    ledger::hash::from_hex(s).unwrap_or_else(|e| panic!("{e}"))
}

fn rfc6962_roots() -> Vec<Hash> {
    RFC6962_ROOTS.iter().map(|r| unhex(r)).collect()
}

fn vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    CONSISTENCY_VECTORS
        .iter()
        .map(|(m, n, p)| (*m, *n, p.iter().map(|h| unhex(h)).collect()))
        .collect()
}

fn check(m: u64, n: u64, path: &[Hash], old: &Hash, new: &Hash) -> Result<(), ProofError> {
    verify_consistency::<Sha256>(m, n, path, old, new)
}

#[test]
fn rfc9162_consistency_vectors_verify_and_match_the_tree() {
    let roots = rfc6962_roots();
    let hashed: Vec<Hash> = RFC6962_DATA
        .iter()
        .map(|d| TreeHasher::<Sha256>::leaf(&hex::decode(d).unwrap_or_default()))
        .collect();
    let tree = MemoryTree::<Sha256>::new(hashed);
    for (m, n, path) in vectors() {
        let (old, new) = (roots[m as usize], roots[n as usize]);
        assert_eq!(check(m, n, &path, &old, &new), Ok(()), "{m}->{n}");
        assert_eq!(tree.consistency(m, n), Some(path), "{m}->{n}");
    }
    for m in 1..=8u64 {
        let r = roots[m as usize];
        assert_eq!(check(m, m, &[], &r, &r), Ok(()), "{m}->{m}");
        let other = roots[m as usize - 1];
        assert_eq!(check(m, m, &[], &r, &other), Err(ProofError::RootMismatch));
        assert_eq!(check(m, m, &[r], &r, &r), Err(ProofError::WrongPathLength));
    }
}

#[test]
fn consistency_from_size_zero_is_refused() {
    let roots = rfc6962_roots();
    let empty = roots[0];
    assert_eq!(
        check(0, 0, &[], &empty, &empty),
        Err(ProofError::FromEmptyTree)
    );
    assert_eq!(
        check(0, 0, &[empty], &empty, &empty),
        Err(ProofError::FromEmptyTree)
    );
    for n in 1..=8u64 {
        let new = roots[n as usize];
        for old in [empty, new] {
            assert_eq!(
                check(0, n, &[], &old, &new),
                Err(ProofError::FromEmptyTree),
                "0->{n} empty"
            );
            assert_eq!(
                check(0, n, &[new], &old, &new),
                Err(ProofError::FromEmptyTree),
                "0->{n} [new root]"
            );
            assert_eq!(
                check(0, n, &[empty, new], &old, &new),
                Err(ProofError::FromEmptyTree),
                "0->{n} [empty, new]"
            );
        }
    }
    for (m, n, path) in vectors() {
        assert_eq!(
            check(0, n, &path, &roots[m as usize], &roots[n as usize]),
            Err(ProofError::FromEmptyTree),
            "the {m}->{n} path presented as 0->{n}"
        );
    }
}

#[test]
fn malformed_consistency_proofs_are_refused() {
    let roots = rfc6962_roots();
    let all = vectors();
    for (m, n, path) in &all {
        let (m, n) = (*m, *n);
        let (old, new) = (roots[m as usize], roots[n as usize]);
        for len in 0..path.len() {
            assert!(
                check(m, n, &path[..len], &old, &new).is_err(),
                "{m}->{n} truncated to {len}"
            );
        }
        let last = path.last().copied().unwrap_or_default();
        for extra in [new, old, last, [0u8; 32], roots[1]] {
            let mut longer = path.clone();
            longer.push(extra);
            assert_eq!(
                check(m, n, &longer, &old, &new),
                Err(ProofError::WrongPathLength),
                "{m}->{n} with an extra trailing hash"
            );
            let mut prepended = vec![extra];
            prepended.extend_from_slice(path);
            assert!(
                check(m, n, &prepended, &old, &new).is_err(),
                "{m}->{n} with an extra leading hash"
            );
        }
        for i in 0..path.len() {
            for bit in [0, 100, 255] {
                let mut p = path.clone();
                p[i] = flip(&p[i], bit);
                assert_eq!(
                    check(m, n, &p, &old, &new),
                    Err(ProofError::RootMismatch),
                    "{m}->{n} node {i} bit {bit}"
                );
            }
        }
        for p in [path.clone(), Vec::new()] {
            assert_eq!(
                check(n, m, &p, &new, &old),
                Err(ProofError::SizesReversed { from: n, to: m }),
                "{n}->{m}"
            );
        }
        for (m2, n2, other) in &all {
            if (m2, n2) != (&m, &n) && other != path {
                assert!(
                    check(m, n, other, &old, &new).is_err(),
                    "the {m2}->{n2} path presented as {m}->{n}"
                );
            }
        }
    }
}
