//! ES256 key material: the broker's [`SigningKey`], public [`VerifyingKey`]s
//! identified by their RFC 7638 thumbprint, and [`KeySet`]s exchanged as
//! COSE_KeySet (RFC 9052 §7) or JWKS (RFC 7517).

use std::sync::OnceLock;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ParsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ciborium::value::Value;
use coset::{iana, AsCborValue, CoseKey, CoseKeyBuilder, KeyType, Label};

use super::{cbor, TokenError};
use crate::crypto::{Curve, PublicKey};

/// Length of one P-256 coordinate.
const COORD_LEN: usize = 32;
/// Length of an uncompressed SEC1 P-256 point `04 ‖ x ‖ y`.
const POINT_LEN: usize = 1 + 2 * COORD_LEN;
const PEM_LABEL: &str = "PRIVATE KEY";

/// RFC 7638 JWK thumbprint of a P-256 public key: SHA-256 over
/// `{"crv":"P-256","kty":"EC","x":…,"y":…}` (base64url coordinates, members
/// in lexicographic order, no whitespace), itself base64url without padding.
pub fn jwk_thumbprint(x: &[u8], y: &[u8]) -> String {
    let json = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, json.as_bytes()))
}

/// An ES256 (ECDSA P-256 with SHA-256) private key. Its `Debug` output shows
/// only the `kid`.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.verifying.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Result<Self, TokenError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| {
            TokenError::Crypto {
                operation: "P-256 key generation",
            }
        })?;
        Self::from_pair(pair)
    }

    /// Load an unencrypted PKCS#8 (v1 or v2) P-256 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, TokenError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| {
                TokenError::KeyRejected {
                    what: "PKCS#8 P-256 private key",
                }
            })?;
        Self::from_pair(pair)
    }

    /// Load a `-----BEGIN PRIVATE KEY-----` PEM document.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, TokenError> {
        let doc = pem::parse(pem).map_err(|_| TokenError::PemMalformed)?;
        if doc.tag() != PEM_LABEL {
            return Err(TokenError::PemLabel {
                expected: PEM_LABEL,
                actual: doc.tag().to_string(),
            });
        }
        Self::from_pkcs8_der(doc.contents())
    }

    /// PKCS#8 v1 DER of this key.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, TokenError> {
        self.pair
            .to_pkcs8v1()
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| TokenError::Crypto {
                operation: "PKCS#8 encoding",
            })
    }

    /// PKCS#8 v1 PEM (`PRIVATE KEY`, LF line endings) of this key.
    pub fn to_pkcs8_pem(&self) -> Result<String, TokenError> {
        let der = self.to_pkcs8_der()?;
        Ok(pem::encode_config(
            &pem::Pem::new(PEM_LABEL, der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }

    /// The key identifier: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> String {
        self.verifying.kid.clone()
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }

    /// ES256 signature (`r ‖ s`, 64 bytes) over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
        self.pair
            .sign(&SystemRandom::new(), msg)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| TokenError::Crypto {
                operation: "ES256 signing",
            })
    }

    fn from_pair(pair: EcdsaKeyPair) -> Result<Self, TokenError> {
        let verifying = VerifyingKey::from_sec1(pair.public_key().as_ref())?;
        Ok(SigningKey { pair, verifying })
    }
}

/// A P-256 public key that verifies ES256 signatures, with its `kid` (the
/// RFC 7638 thumbprint). Keys built by the public constructors are validated
/// on the curve and parsed once, so verification does no key parsing. A key
/// decoded from a token's `cnf` claim is only checked for form (65-byte
/// uncompressed point); its curve check runs on first [`VerifyingKey::verify`]
/// or [`VerifyingKey::validate`] — the broker validated it when it minted.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    /// RFC 7638 thumbprint (base64url, no padding).
    pub kid: String,
    point: Vec<u8>,
    parsed: OnceLock<ParsedPublicKey>,
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.point == other.point
    }
}

impl Eq for VerifyingKey {}

impl VerifyingKey {
    /// From an uncompressed SEC1 point `04 ‖ x ‖ y` (65 bytes) on P-256.
    pub fn from_sec1(point: &[u8]) -> Result<Self, TokenError> {
        let key = Self::from_sec1_deferred(point)?;
        key.validate()?;
        Ok(key)
    }

    /// Form check only (length, uncompressed prefix); the curve check is deferred.
    pub(crate) fn from_sec1_deferred(point: &[u8]) -> Result<Self, TokenError> {
        if point.len() != POINT_LEN || point.first() != Some(&0x04) {
            return Err(TokenError::KeyRejected {
                what: "P-256 uncompressed point",
            });
        }
        let (x, y) = split_point(point)?;
        Ok(VerifyingKey {
            kid: jwk_thumbprint(x, y),
            point: point.to_vec(),
            parsed: OnceLock::new(),
        })
    }

    /// Check that the point is on P-256 (and cache the parsed key).
    pub fn validate(&self) -> Result<(), TokenError> {
        self.parsed().map(|_| ())
    }

    fn parsed(&self) -> Result<&ParsedPublicKey, TokenError> {
        if let Some(p) = self.parsed.get() {
            return Ok(p);
        }
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point).map_err(|_| {
            TokenError::KeyRejected {
                what: "P-256 uncompressed point",
            }
        })?;
        Ok(self.parsed.get_or_init(|| parsed))
    }

    /// From affine coordinates, each exactly 32 bytes.
    pub fn from_xy(x: &[u8], y: &[u8]) -> Result<Self, TokenError> {
        let key = Self::from_xy_deferred(x, y)?;
        key.validate()?;
        Ok(key)
    }

    fn from_xy_deferred(x: &[u8], y: &[u8]) -> Result<Self, TokenError> {
        if x.len() != COORD_LEN || y.len() != COORD_LEN {
            return Err(TokenError::KeyRejected {
                what: "P-256 coordinates",
            });
        }
        let mut point = Vec::with_capacity(POINT_LEN);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::from_sec1_deferred(&point)
    }

    /// The uncompressed SEC1 point `04 ‖ x ‖ y`.
    pub fn sec1_point(&self) -> &[u8] {
        &self.point
    }

    /// The x coordinate (32 bytes).
    pub fn x(&self) -> &[u8] {
        self.point.get(1..1 + COORD_LEN).unwrap_or_default()
    }

    /// The y coordinate (32 bytes).
    pub fn y(&self) -> &[u8] {
        self.point.get(1 + COORD_LEN..).unwrap_or_default()
    }

    /// This key in the crate-wide [`PublicKey`] form.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::Ec {
            curve: Curve::P256,
            point: self.point.clone(),
        }
    }

    /// Verify an ES256 signature (`r ‖ s`) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), TokenError> {
        self.parsed()?
            .verify_sig(msg, sig)
            .map_err(|_| TokenError::BadSignature)
    }

    /// RFC 9053 EC2 COSE_Key: kty EC2, kid (thumbprint as UTF-8 bytes), alg ES256, crv P-256, x, y.
    pub fn to_cose_key(&self) -> CoseKey {
        CoseKeyBuilder::new_ec2_pub_key(
            iana::EllipticCurve::P_256,
            self.x().to_vec(),
            self.y().to_vec(),
        )
        .key_id(self.kid.as_bytes().to_vec())
        .algorithm(iana::Algorithm::ES256)
        .build()
    }

    /// Parse an EC2 P-256 public COSE_Key. `alg`, when present, must be ES256;
    /// `kid`, when present, must equal the thumbprint; a private `d` is rejected.
    pub fn from_cose_key(key: &CoseKey) -> Result<Self, TokenError> {
        let vk = Self::from_cose_key_deferred(key)?;
        vk.validate()?;
        Ok(vk)
    }

    fn from_cose_key_deferred(key: &CoseKey) -> Result<Self, TokenError> {
        const F: &str = "COSE_Key";
        if key.kty != KeyType::Assigned(iana::KeyType::EC2) {
            return Err(TokenError::KeyField {
                format: F,
                field: "kty (1)",
                expected: "EC2 (2)",
            });
        }
        if let Some(alg) = &key.alg {
            if *alg != coset::Algorithm::Assigned(iana::Algorithm::ES256) {
                return Err(TokenError::KeyField {
                    format: F,
                    field: "alg (3)",
                    expected: "ES256 (-7)",
                });
            }
        }
        let (mut crv, mut x, mut y) = (None, None, None);
        for (label, value) in &key.params {
            match label {
                Label::Int(-1) => crv = Some(value),
                Label::Int(-2) => x = Some(value),
                Label::Int(-3) => y = Some(value),
                Label::Int(-4) => {
                    return Err(TokenError::PrivateKeyComponent {
                        format: F,
                        field: "d (-4)",
                    })
                }
                _ => {}
            }
        }
        let crv_ok = matches!(crv, Some(Value::Integer(i))
            if i128::from(*i) == iana::EllipticCurve::P_256 as i128);
        if !crv_ok {
            return Err(TokenError::KeyField {
                format: F,
                field: "crv (-1)",
                expected: "P-256 (1)",
            });
        }
        let coord = |v: Option<&Value>, field: &'static str| match v {
            Some(Value::Bytes(b)) if b.len() == COORD_LEN => Ok(b.clone()),
            _ => Err(TokenError::KeyField {
                format: F,
                field,
                expected: "32-byte byte string (compressed points are not accepted)",
            }),
        };
        let vk = Self::from_xy_deferred(&coord(x, "x (-2)")?, &coord(y, "y (-3)")?)?;
        if !key.key_id.is_empty() {
            let stated = String::from_utf8_lossy(&key.key_id).into_owned();
            check_kid(&vk, &stated)?;
        }
        Ok(vk)
    }

    /// The COSE_Key as deterministic CBOR (RFC 8949 §4.2.1 key order).
    pub fn to_cose_key_bytes(&self) -> Result<Vec<u8>, TokenError> {
        cbor::encode(&self.cose_key_value()?, "COSE_Key")
    }

    /// Parse one CBOR-encoded COSE_Key (no trailing bytes).
    pub fn from_cose_key_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        Self::from_cose_key_value(cbor::read_exact(bytes, "COSE_Key")?)
    }

    pub(crate) fn cose_key_value(&self) -> Result<Value, TokenError> {
        let value = self
            .to_cose_key()
            .to_cbor_value()
            .map_err(|_| TokenError::Encode { what: "COSE_Key" })?;
        cbor::canonicalize(value, "COSE_Key")
    }

    pub(crate) fn from_cose_key_value(value: Value) -> Result<Self, TokenError> {
        let vk = Self::from_cose_key_value_deferred(value)?;
        vk.validate()?;
        Ok(vk)
    }

    /// For `cnf`: the curve check is left to first use.
    pub(crate) fn from_cose_key_value_deferred(value: Value) -> Result<Self, TokenError> {
        let key = CoseKey::from_cbor_value(value).map_err(|e| TokenError::Cose {
            structure: "COSE_Key",
            reason: e.to_string(),
        })?;
        Self::from_cose_key_deferred(&key)
    }

    /// RFC 7517 JWK: `{"kty":"EC","crv":"P-256","x":…,"y":…,"kid":…,"alg":"ES256","use":"sig"}`.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(self.x()),
            "y": URL_SAFE_NO_PAD.encode(self.y()),
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// Parse a public EC P-256 JWK. `kid`, `alg` and `use` are optional but must
    /// agree (thumbprint, `ES256`, `sig`); a private `d` is rejected.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, TokenError> {
        const F: &str = "JWK";
        let obj = jwk.as_object().ok_or(TokenError::KeyField {
            format: F,
            field: "(document)",
            expected: "JSON object",
        })?;
        let text = |field: &'static str| -> Result<Option<&str>, TokenError> {
            match obj.get(field) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(TokenError::KeyField {
                    format: F,
                    field,
                    expected: "string",
                }),
            }
        };
        if obj.contains_key("d") {
            return Err(TokenError::PrivateKeyComponent {
                format: F,
                field: "d",
            });
        }
        let expect = |field: &'static str, want: &'static str, required: bool| match text(field)? {
            Some(v) if v == want => Ok(()),
            None if !required => Ok(()),
            _ => Err(TokenError::KeyField {
                format: F,
                field,
                expected: want,
            }),
        };
        expect("kty", "EC", true)?;
        expect("crv", "P-256", true)?;
        expect("alg", "ES256", false)?;
        expect("use", "sig", false)?;
        let coord = |field: &'static str| -> Result<Vec<u8>, TokenError> {
            let err = TokenError::KeyField {
                format: F,
                field,
                expected: "base64url (unpadded) of 32 bytes",
            };
            let s = text(field)?.ok_or(err.clone())?;
            match URL_SAFE_NO_PAD.decode(s) {
                Ok(b) if b.len() == COORD_LEN => Ok(b),
                _ => Err(err),
            }
        };
        let vk = Self::from_xy(&coord("x")?, &coord("y")?)?;
        if let Some(kid) = text("kid")? {
            check_kid(&vk, kid)?;
        }
        Ok(vk)
    }
}

impl serde::Serialize for VerifyingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_jwk().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for VerifyingKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let jwk = serde_json::Value::deserialize(d)?;
        VerifyingKey::from_jwk(&jwk).map_err(serde::de::Error::custom)
    }
}

fn check_kid(vk: &VerifyingKey, stated: &str) -> Result<(), TokenError> {
    if stated != vk.kid {
        return Err(TokenError::KidMismatch {
            expected: vk.kid.clone(),
            actual: stated.to_string(),
        });
    }
    Ok(())
}

fn split_point(point: &[u8]) -> Result<(&[u8], &[u8]), TokenError> {
    let err = TokenError::KeyRejected {
        what: "P-256 uncompressed point",
    };
    let x = point.get(1..1 + COORD_LEN).ok_or(err.clone())?;
    let y = point.get(1 + COORD_LEN..POINT_LEN).ok_or(err)?;
    Ok((x, y))
}

/// The public keys a verifier trusts, looked up by `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// A key set; two keys with the same `kid` are an error.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, TokenError> {
        let mut seen = std::collections::BTreeSet::new();
        for k in &keys {
            if !seen.insert(k.kid.as_str()) {
                return Err(TokenError::DuplicateKey { kid: k.kid.clone() });
            }
        }
        Ok(KeySet { keys })
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// COSE_KeySet (a CBOR array of COSE_Key), each key in deterministic encoding.
    pub fn to_cose_key_set(&self) -> Result<Vec<u8>, TokenError> {
        let keys = self
            .keys
            .iter()
            .map(VerifyingKey::cose_key_value)
            .collect::<Result<Vec<_>, _>>()?;
        cbor::encode(&Value::Array(keys), "COSE_KeySet")
    }

    /// Parse a COSE_KeySet (no trailing bytes, no duplicate kids).
    pub fn from_cose_key_set(bytes: &[u8]) -> Result<Self, TokenError> {
        let Value::Array(items) = cbor::read_exact(bytes, "COSE_KeySet")? else {
            return Err(TokenError::KeyField {
                format: "COSE_KeySet",
                field: "(document)",
                expected: "array of COSE_Key",
            });
        };
        let keys = items
            .into_iter()
            .map(VerifyingKey::from_cose_key_value)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// RFC 7517 JWK Set: `{"keys":[…]}`.
    pub fn to_jwks_json(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(VerifyingKey::to_jwk).collect::<Vec<_>>() })
    }

    /// Parse a JWK Set (no duplicate kids).
    pub fn from_jwks_json(jwks: &serde_json::Value) -> Result<Self, TokenError> {
        let list = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(TokenError::KeyField {
                format: "JWKS",
                field: "keys",
                expected: "array of JWK",
            })?;
        let keys = list
            .iter()
            .map(VerifyingKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }
}
