//! Signed-note and checkpoint tests: golang.org/x/mod/sumdb/note vectors, a
//! real sum.golang.org checkpoint, round trips and rejections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use verifier_lib::audit::{
    open_checkpoint, open_note, sign_checkpoint, AuditError, Checkpoint, CheckpointSigner,
    VerifierKey,
};

fn dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/audit/signed-note"
    ))
    .to_path_buf()
}

#[derive(Deserialize)]
struct NoteCase {
    vkey: String,
    note: String,
    text: Option<String>,
    error: Option<String>,
    skey: Option<String>,
    checkpoint: Option<CheckpointFields>,
}

#[derive(Deserialize)]
struct CheckpointFields {
    origin: String,
    size: u64,
    root_b64: String,
}

fn cases() -> Vec<(PathBuf, NoteCase)> {
    let mut out: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let c = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, c)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn signed_note_vectors() {
    let cases = cases();
    assert!(cases.len() >= 10);
    for (path, c) in cases {
        let got = open_note(&c.note, &c.vkey);
        match (&c.text, &c.error) {
            (Some(text), None) => assert_eq!(&got.unwrap(), text, "{}", path.display()),
            (None, Some(kind)) => {
                let err = got.expect_err(&path.display().to_string());
                let ok = match kind.as_str() {
                    "malformed" => matches!(err, AuditError::NoteMalformed { .. }),
                    "not signed by key" => matches!(err, AuditError::NoteNotSignedByKey { .. }),
                    "signature invalid" => matches!(err, AuditError::NoteSignatureInvalid { .. }),
                    other => panic!("unknown expected error {other}"),
                };
                assert!(ok, "{}: {err:?}", path.display());
            }
            _ => panic!("{}: needs text or error", path.display()),
        }
        if let Some(cp) = &c.checkpoint {
            let opened = open_checkpoint(&c.note, &c.vkey).unwrap();
            assert_eq!(opened.origin, cp.origin);
            assert_eq!(opened.size, cp.size);
            assert_eq!(opened.root.to_vec(), B64.decode(&cp.root_b64).unwrap());
            assert!(opened.extensions.is_empty());
        }
        // Signing with the published private key reproduces the note
        // (Ed25519 is deterministic).
        if let Some(skey) = &c.skey {
            let parts: Vec<&str> = skey.splitn(5, '+').collect();
            assert_eq!(&parts[..2], &["PRIVATE", "KEY"]);
            let raw = B64.decode(parts[4]).unwrap();
            assert_eq!(raw[0], 1);
            let signer =
                CheckpointSigner::from_seed(parts[2], &raw[1..].try_into().unwrap()).unwrap();
            assert_eq!(signer.vkey(), c.vkey);
            assert_eq!(
                signer.sign_note(c.text.as_deref().unwrap()).unwrap(),
                c.note
            );
        }
    }
}

#[test]
fn verifier_key_vectors_and_manglings() {
    let valid = std::fs::read_to_string(dir().join("vkeys-valid.txt")).unwrap();
    for vkey in valid.lines() {
        let vk = VerifierKey::parse(vkey).unwrap();
        assert_eq!(vk.to_text(), vkey);
        // Every proper substring and every single-byte change is rejected.
        let b = vkey.as_bytes();
        for i in 0..b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                        assert!(VerifierKey::parse(s).is_err(), "{s}");
                    }
                }
            }
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(VerifierKey::parse(s).is_err(), "{s}");
            }
        }
    }
    let invalid = std::fs::read_to_string(dir().join("vkeys-invalid.txt")).unwrap();
    for vkey in invalid.lines() {
        assert!(VerifierKey::parse(vkey).is_err(), "{vkey}");
    }
}

fn sample() -> Checkpoint {
    Checkpoint::new("writ.example/audit", 1234, [7u8; 32])
}

#[test]
fn checkpoint_round_trip_and_formats() {
    let signer = CheckpointSigner::generate("writ.example/audit").unwrap();
    let note = sign_checkpoint(&signer, &sample()).unwrap();
    assert!(note.starts_with("writ.example/audit\n1234\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} writ.example/audit "));
    assert_eq!(open_checkpoint(&note, &signer.vkey()).unwrap(), sample());

    // Key round trip through PKCS#8.
    let again =
        CheckpointSigner::from_pkcs8("writ.example/audit", &signer.to_pkcs8().unwrap()).unwrap();
    assert_eq!(again.vkey(), signer.vkey());
    assert_eq!(
        open_checkpoint(&sign_checkpoint(&again, &sample()).unwrap(), &signer.vkey()).unwrap(),
        sample()
    );

    // Extension lines survive.
    let mut ext = sample();
    ext.extensions = vec!["timestamp 1700000000".into(), "second".into()];
    let note = sign_checkpoint(&signer, &ext).unwrap();
    assert_eq!(open_checkpoint(&note, &signer.vkey()).unwrap(), ext);
}

#[test]
fn checkpoint_rejections() {
    let signer = CheckpointSigner::generate("writ.example/audit").unwrap();
    let other = CheckpointSigner::generate("writ.example/audit").unwrap();
    let vkey = signer.vkey();
    let note = sign_checkpoint(&signer, &sample()).unwrap();

    // Wrong key (same name, different key hash) → not signed by this key.
    assert!(matches!(
        open_checkpoint(&note, &other.vkey()),
        Err(AuditError::NoteNotSignedByKey { .. })
    ));
    // Altered size, root, origin → signature fails.
    for altered in [
        note.replacen("\n1234\n", "\n1235\n", 1),
        note.replacen("BwcHBwcH", "BwcHBwcI", 1),
        note.replacen("writ.example/audit\n", "writ.example/audiT\n", 1),
    ] {
        assert_ne!(altered, note);
        assert!(matches!(
            open_checkpoint(&altered, &vkey),
            Err(AuditError::NoteSignatureInvalid { .. })
        ));
    }
    // Extra signature lines by unknown keys are fine, before or after.
    let cosigner = CheckpointSigner::generate("witness.example").unwrap();
    let body = sample().body().unwrap();
    let cosig = cosigner.sign_note(&body).unwrap();
    let cosig_line = cosig.strip_prefix(&format!("{body}\n")).unwrap();
    let both = format!("{note}{cosig_line}");
    assert_eq!(open_checkpoint(&both, &vkey).unwrap(), sample());
    assert_eq!(open_checkpoint(&both, &cosigner.vkey()).unwrap(), sample());
    let sig_line = note.strip_prefix(&format!("{body}\n")).unwrap();
    let reordered = format!("{body}\n{cosig_line}{sig_line}");
    assert_eq!(open_checkpoint(&reordered, &vkey).unwrap(), sample());
    // Only an unknown key → rejected.
    assert!(matches!(
        open_checkpoint(&cosig, &vkey),
        Err(AuditError::NoteNotSignedByKey { .. })
    ));
    // Malformed notes.
    let malformed = [
        String::new(),
        body.clone(),
        format!("{body}\n"),
        note.trim_end_matches('\n').to_owned(),
        note.replacen("\u{2014} ", "- ", 1),
        note.replacen(
            "\u{2014} writ.example/audit ",
            "\u{2014} writ.example/audit  ",
            1,
        ),
        format!("{note}trailing line\n"),
        format!("{note}\n"),
        note.replacen("\n1234\n", "\n\n1234\n", 1),
        note.replacen("writ", "\twrit", 1),
    ];
    for m in &malformed {
        let r = open_checkpoint(m, &vkey);
        assert!(
            matches!(r, Err(AuditError::NoteMalformed { .. })),
            "{m:?}: {r:?}"
        );
    }
    // Malformed bodies, properly signed.
    let bodies = [
        "o\n01\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "o\n+1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "o\n 1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "o\n18446744073709551616\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==\n",
        "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc\n",
        "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd=\n",
        "o\n1\n",
        "o\n",
    ];
    for b in bodies {
        let n = signer.sign_note(b).unwrap();
        let r = open_checkpoint(&n, &vkey);
        assert!(
            matches!(r, Err(AuditError::CheckpointMalformed { .. })),
            "{b:?}: {r:?}"
        );
    }
    // Checkpoints that cannot be written as a note are refused at signing.
    let mut bad = sample();
    bad.origin = "two\nlines".into();
    assert!(sign_checkpoint(&signer, &bad).is_err());
    bad.origin = String::new();
    assert!(sign_checkpoint(&signer, &bad).is_err());
    let mut bad = sample();
    bad.extensions = vec![String::new()];
    assert!(sign_checkpoint(&signer, &bad).is_err());
    assert!(CheckpointSigner::generate("has space").is_err());
    assert!(CheckpointSigner::generate("has+plus").is_err());
    assert!(CheckpointSigner::from_pkcs8("x", b"not a key").is_err());
}
