//! `writ-broker operator-token --name NAME`: make an operator bearer token.
//! Prints the token (give it to the operator) and the `[[operators.tokens]]`
//! entry for the broker's configuration (only the token's SHA-256 is stored
//! there).

use std::process::ExitCode;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use verifier_lib::crypto::HashAlg;

use crate::config::{OperatorToken, OperatorsConfig};
use crate::decision::nonce::random_bytes;

/// A new random operator token (base64url, 32 bytes) and its SHA-256 (hex).
pub fn new_token() -> Result<(String, String), crate::decision::DecisionError> {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let digest = hex::encode(HashAlg::Sha256.digest(token.as_bytes()));
    Ok((token, digest))
}

pub(super) fn run(name: &str) -> ExitCode {
    let probe = OperatorsConfig {
        tokens: vec![OperatorToken {
            name: name.to_owned(),
            sha256: "0".repeat(64),
        }],
        dangerous_unauthenticated: false,
    };
    if let Err(e) = probe.validate() {
        eprintln!("writ-broker: {e}");
        return ExitCode::from(2);
    }
    match new_token() {
        Ok((token, digest)) => {
            eprintln!("operator token for {name} (shown once; the broker keeps only its SHA-256):");
            eprintln!("{token}");
            println!("[[operators.tokens]]\nname = {name:?}\nsha256 = \"{digest}\"");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("writ-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
