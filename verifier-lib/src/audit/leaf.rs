//! Audit-log leaves: one [`Leaf`] per broker decision, encoded as RFC 8949
//! §4.2.1 core deterministic CBOR. See the module documentation of
//! [`crate::audit`] for the exact layout.

use ciborium::Value;
use serde::Serialize;

use super::AuditError;

/// The only leaf schema version this crate writes and reads.
pub const LEAF_SCHEMA: u32 = 1;

/// Largest encoded leaf accepted by [`Leaf::decode`].
pub const MAX_LEAF_LEN: usize = 1 << 20;

/// Outcome recorded for an appraisal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The evidence satisfied the policy.
    Pass,
    /// The evidence failed the policy.
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// The TPM clock baseline an appraisal recorded for a host: the quote's
/// `TPMS_CLOCK_INFO` counters and how they follow the previous baseline
/// (`first`, `same_boot`, `resumed`, `rebooted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockBaseline {
    pub reset_count: u32,
    pub restart_count: u32,
    pub clock: u64,
    pub transition: String,
}

impl ClockBaseline {
    fn to_value(&self) -> Value {
        MapBuilder::new()
            .put("clock", Value::Integer(self.clock.into()))
            .put("reset_count", Value::Integer(self.reset_count.into()))
            .put("restart_count", Value::Integer(self.restart_count.into()))
            .text("transition", &self.transition)
            .build()
    }

    fn from_value(v: Value) -> Result<ClockBaseline, AuditError> {
        let mut f = Fields::new(v, "tpm_clock")?;
        let c = ClockBaseline {
            reset_count: u32::try_from(f.uint("reset_count")?).map_err(|_| {
                AuditError::LeafField {
                    field: "reset_count",
                    expected: "integer in u32 range",
                }
            })?,
            restart_count: u32::try_from(f.uint("restart_count")?).map_err(|_| {
                AuditError::LeafField {
                    field: "restart_count",
                    expected: "integer in u32 range",
                }
            })?,
            clock: f.uint("clock")?,
            transition: f.text("transition")?,
        };
        f.finish()?;
        Ok(c)
    }
}

/// One broker decision. Digests are raw bytes (CBOR byte strings); they are
/// printed as hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// A host asked to enroll; `accepted` says whether it was.
    Enrollment {
        host: String,
        accepted: bool,
        /// SHA-256 of the EK certificate, when the host presented one.
        #[serde(serialize_with = "hex_opt")]
        ek_cert_digest: Option<Vec<u8>>,
        /// TPM name of the attestation key.
        #[serde(serialize_with = "hex_bytes")]
        ak_name: Vec<u8>,
        /// Why the enrollment was refused (or a note when accepted).
        reason: Option<String>,
    },
    /// A fresh nonce was issued to a host (only its digest is logged).
    NonceIssued {
        host: String,
        #[serde(serialize_with = "hex_bytes")]
        nonce_digest: Vec<u8>,
    },
    /// Evidence from a host was appraised against a policy.
    Appraisal {
        host: String,
        #[serde(serialize_with = "hex_bytes")]
        evidence_digest: Vec<u8>,
        policy_id: String,
        #[serde(serialize_with = "hex_bytes")]
        policy_hash: Vec<u8>,
        verdict: Verdict,
        /// Failed policy checks, in the order the appraiser reported them.
        failures: Vec<String>,
        /// TPM: the clock baseline this appraisal set for the host (absent
        /// when the quote's clock was refused, or for other evidence).
        #[serde(skip_serializing_if = "Option::is_none")]
        tpm_clock: Option<ClockBaseline>,
        /// SHA-256 of the challenge nonce the appraisal consumed (issuing a
        /// challenge is not logged; its use is, here).
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_opt")]
        nonce_digest: Option<Vec<u8>>,
        /// Who signed the policy (`sha256:<hex>` of the operator key;
        /// absent: an unsigned policy).
        #[serde(skip_serializing_if = "Option::is_none")]
        policy_signer: Option<String>,
        /// Risks the policy accepted explicitly (`dangerous_*`), e.g. a
        /// SHA-1 quote signature; absent when none.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// An execution token was minted.
    TokenMinted {
        cti: String,
        sub: String,
        aud: String,
        /// Expiry, unix seconds.
        exp: i64,
        /// The token this one was derived from, if any.
        parent_cti: Option<String>,
        #[serde(serialize_with = "hex_bytes")]
        token_digest: Vec<u8>,
    },
    /// A token was revoked.
    TokenRevoked { cti: String, reason: String },
    /// A host was revoked.
    HostRevoked { host: String, reason: String },
    /// Every token issued for a workload was revoked.
    WorkloadRevoked { workload: String, reason: String },
    /// The host's AK certified a request-signing key (TPM2_Certify).
    RequestKeyCertified {
        host: String,
        #[serde(serialize_with = "hex_bytes")]
        key_name: Vec<u8>,
    },
    /// A host moved between lifecycle states.
    HostStateChanged {
        host: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A policy became the active one for its id.
    PolicyActivated {
        policy_id: String,
        #[serde(serialize_with = "hex_bytes")]
        policy_hash: Vec<u8>,
        /// The hash of the policy active before (`None`: none was, or the
        /// leaf predates the field).
        #[serde(serialize_with = "hex_opt", skip_serializing_if = "Option::is_none")]
        previous_policy_hash: Option<Vec<u8>>,
    },
    /// Something an operator did by hand.
    OperatorAction { who: String, what: String },
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leaf {
    /// Schema version, [`LEAF_SCHEMA`].
    pub schema: u32,
    /// When the decision was taken, unix seconds (passed in by the caller).
    pub time: i64,
    /// The decision.
    pub decision: Decision,
}

fn hex_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn hex_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

/// Builds a CBOR map with text keys in deterministic order (RFC 8949
/// §4.2.1: sorted by the bytewise order of the encoded keys, which for
/// definite-length text keys is shorter-first, then bytewise).
struct MapBuilder(Vec<(String, Value)>);

impl MapBuilder {
    fn new() -> Self {
        MapBuilder(Vec::new())
    }
    fn put(mut self, key: &str, v: Value) -> Self {
        self.0.push((key.to_owned(), v));
        self
    }
    fn text(self, key: &str, v: &str) -> Self {
        self.put(key, Value::Text(v.to_owned()))
    }
    fn bytes(self, key: &str, v: &[u8]) -> Self {
        self.put(key, Value::Bytes(v.to_vec()))
    }
    fn int(self, key: &str, v: i64) -> Self {
        self.put(key, Value::Integer(v.into()))
    }
    fn opt_put(self, key: &str, v: Option<Value>) -> Self {
        match v {
            Some(v) => self.put(key, v),
            None => self,
        }
    }
    fn opt_text(self, key: &str, v: Option<&str>) -> Self {
        match v {
            Some(t) => self.text(key, t),
            None => self,
        }
    }
    fn opt_bytes(self, key: &str, v: Option<&[u8]>) -> Self {
        match v {
            Some(b) => self.bytes(key, b),
            None => self,
        }
    }
    fn build(mut self) -> Value {
        self.0
            .sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        Value::Map(
            self.0
                .into_iter()
                .map(|(k, v)| (Value::Text(k), v))
                .collect(),
        )
    }
}

impl Decision {
    /// The `kind` string written to the leaf.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Enrollment { .. } => "enrollment",
            Decision::NonceIssued { .. } => "nonce_issued",
            Decision::Appraisal { .. } => "appraisal",
            Decision::TokenMinted { .. } => "token_minted",
            Decision::TokenRevoked { .. } => "token_revoked",
            Decision::HostRevoked { .. } => "host_revoked",
            Decision::WorkloadRevoked { .. } => "workload_revoked",
            Decision::RequestKeyCertified { .. } => "request_key_certified",
            Decision::HostStateChanged { .. } => "host_state_changed",
            Decision::PolicyActivated { .. } => "policy_activated",
            Decision::OperatorAction { .. } => "operator_action",
        }
    }

    fn to_value(&self) -> Value {
        let m = MapBuilder::new().text("kind", self.kind());
        let m = match self {
            Decision::Enrollment {
                host,
                accepted,
                ek_cert_digest,
                ak_name,
                reason,
            } => m
                .text("host", host)
                .put("accepted", Value::Bool(*accepted))
                .opt_bytes("ek_cert_digest", ek_cert_digest.as_deref())
                .bytes("ak_name", ak_name)
                .opt_text("reason", reason.as_deref()),
            Decision::NonceIssued { host, nonce_digest } => {
                m.text("host", host).bytes("nonce_digest", nonce_digest)
            }
            Decision::Appraisal {
                host,
                evidence_digest,
                policy_id,
                policy_hash,
                verdict,
                failures,
                tpm_clock,
                nonce_digest,
                policy_signer,
                warnings,
            } => m
                .opt_put("tpm_clock", tpm_clock.as_ref().map(ClockBaseline::to_value))
                .opt_bytes("nonce_digest", nonce_digest.as_deref())
                .opt_text("policy_signer", policy_signer.as_deref())
                .opt_put(
                    "warnings",
                    (!warnings.is_empty()).then(|| {
                        Value::Array(warnings.iter().map(|w| Value::Text(w.clone())).collect())
                    }),
                )
                .text("host", host)
                .bytes("evidence_digest", evidence_digest)
                .text("policy_id", policy_id)
                .bytes("policy_hash", policy_hash)
                .text("verdict", verdict.as_str())
                .put(
                    "failures",
                    Value::Array(failures.iter().map(|f| Value::Text(f.clone())).collect()),
                ),
            Decision::TokenMinted {
                cti,
                sub,
                aud,
                exp,
                parent_cti,
                token_digest,
            } => m
                .text("cti", cti)
                .text("sub", sub)
                .text("aud", aud)
                .int("exp", *exp)
                .opt_text("parent_cti", parent_cti.as_deref())
                .bytes("token_digest", token_digest),
            Decision::TokenRevoked { cti, reason } => m.text("cti", cti).text("reason", reason),
            Decision::HostRevoked { host, reason } => m.text("host", host).text("reason", reason),
            Decision::WorkloadRevoked { workload, reason } => {
                m.text("workload", workload).text("reason", reason)
            }
            Decision::RequestKeyCertified { host, key_name } => {
                m.text("host", host).bytes("key_name", key_name)
            }
            Decision::HostStateChanged {
                host,
                from,
                to,
                reason,
            } => m
                .text("host", host)
                .text("from", from)
                .text("to", to)
                .text("reason", reason),
            Decision::PolicyActivated {
                policy_id,
                policy_hash,
                previous_policy_hash,
            } => m
                .text("policy_id", policy_id)
                .bytes("policy_hash", policy_hash)
                .opt_bytes("previous_policy_hash", previous_policy_hash.as_deref()),
            Decision::OperatorAction { who, what } => m.text("who", who).text("what", what),
        };
        m.build()
    }
}

impl Leaf {
    /// A schema-1 leaf.
    pub fn new(time: i64, decision: Decision) -> Leaf {
        Leaf {
            schema: LEAF_SCHEMA,
            time,
            decision,
        }
    }

    /// Deterministic CBOR encoding (RFC 8949 §4.2.1).
    pub fn encode(&self) -> Vec<u8> {
        let v = MapBuilder::new()
            .int("time", self.time)
            .put("schema", Value::Integer(self.schema.into()))
            .put("decision", self.decision.to_value())
            .build();
        let mut out = Vec::new();
        // Writing a Value into a Vec cannot fail.
        if ciborium::into_writer(&v, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Decodes a leaf, rejecting anything that is not exactly the
    /// deterministic encoding of a valid schema-1 leaf: trailing bytes,
    /// non-shortest integers or lengths, indefinite lengths, unsorted or
    /// duplicate keys, unknown or missing fields, tags, floats, and `null`
    /// in place of an absent optional field.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, AuditError> {
        if bytes.len() > MAX_LEAF_LEN {
            return Err(AuditError::LeafTooLarge {
                max: MAX_LEAF_LEN,
                actual: bytes.len(),
            });
        }
        let mut rest = bytes;
        let value: Value = ciborium::from_reader(&mut rest).map_err(|_| AuditError::LeafCbor)?;
        if !rest.is_empty() {
            return Err(AuditError::LeafTrailingBytes { count: rest.len() });
        }
        let leaf = leaf_from_value(value)?;
        if leaf.encode() != bytes {
            return Err(AuditError::LeafNotCanonical);
        }
        Ok(leaf)
    }
}

/// Text-keyed map being consumed field by field.
struct Fields {
    entries: Vec<(String, Value)>,
    ctx: &'static str,
}

impl Fields {
    fn new(v: Value, ctx: &'static str) -> Result<Fields, AuditError> {
        let Value::Map(entries) = v else {
            return Err(AuditError::LeafField {
                field: ctx,
                expected: "map",
            });
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Text(k) = k else {
                return Err(AuditError::LeafField {
                    field: ctx,
                    expected: "text keys",
                });
            };
            if out.iter().any(|(e, _): &(String, Value)| *e == k) {
                return Err(AuditError::LeafDuplicateKey { key: k });
            }
            out.push((k, v));
        }
        Ok(Fields { entries: out, ctx })
    }

    fn take_opt(&mut self, key: &'static str) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    fn take(&mut self, key: &'static str) -> Result<Value, AuditError> {
        self.take_opt(key)
            .ok_or(AuditError::LeafMissingField { field: key })
    }

    fn text(&mut self, key: &'static str) -> Result<String, AuditError> {
        as_text(self.take(key)?, key)
    }

    fn opt_text(&mut self, key: &'static str) -> Result<Option<String>, AuditError> {
        self.take_opt(key).map(|v| as_text(v, key)).transpose()
    }

    fn bytes(&mut self, key: &'static str) -> Result<Vec<u8>, AuditError> {
        as_bytes(self.take(key)?, key)
    }

    fn opt_bytes(&mut self, key: &'static str) -> Result<Option<Vec<u8>>, AuditError> {
        self.take_opt(key).map(|v| as_bytes(v, key)).transpose()
    }

    fn int(&mut self, key: &'static str) -> Result<i64, AuditError> {
        match self.take(key)? {
            Value::Integer(i) => i64::try_from(i).map_err(|_| AuditError::LeafField {
                field: key,
                expected: "integer in i64 range",
            }),
            _ => Err(AuditError::LeafField {
                field: key,
                expected: "integer",
            }),
        }
    }

    fn uint(&mut self, key: &'static str) -> Result<u64, AuditError> {
        match self.take(key)? {
            Value::Integer(i) => u64::try_from(i).map_err(|_| AuditError::LeafField {
                field: key,
                expected: "integer in u64 range",
            }),
            _ => Err(AuditError::LeafField {
                field: key,
                expected: "integer",
            }),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<bool, AuditError> {
        match self.take(key)? {
            Value::Bool(b) => Ok(b),
            _ => Err(AuditError::LeafField {
                field: key,
                expected: "bool",
            }),
        }
    }

    fn finish(self) -> Result<(), AuditError> {
        match self.entries.into_iter().next() {
            None => Ok(()),
            Some((key, _)) => Err(AuditError::LeafUnknownField {
                context: self.ctx,
                key,
            }),
        }
    }
}

fn as_text(v: Value, field: &'static str) -> Result<String, AuditError> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(AuditError::LeafField {
            field,
            expected: "text",
        }),
    }
}

fn as_bytes(v: Value, field: &'static str) -> Result<Vec<u8>, AuditError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(AuditError::LeafField {
            field,
            expected: "byte string",
        }),
    }
}

fn leaf_from_value(v: Value) -> Result<Leaf, AuditError> {
    let mut top = Fields::new(v, "leaf")?;
    let schema_raw = top.int("schema")?;
    if schema_raw != i64::from(LEAF_SCHEMA) {
        return Err(AuditError::LeafSchema {
            expected: LEAF_SCHEMA,
            actual: schema_raw,
        });
    }
    let time = top.int("time")?;
    let decision = decision_from_value(top.take("decision")?)?;
    top.finish()?;
    Ok(Leaf {
        schema: LEAF_SCHEMA,
        time,
        decision,
    })
}

fn decision_from_value(v: Value) -> Result<Decision, AuditError> {
    let mut f = Fields::new(v, "decision")?;
    let kind = f.text("kind")?;
    let d = match kind.as_str() {
        "enrollment" => Decision::Enrollment {
            host: f.text("host")?,
            accepted: f.bool("accepted")?,
            ek_cert_digest: f.opt_bytes("ek_cert_digest")?,
            ak_name: f.bytes("ak_name")?,
            reason: f.opt_text("reason")?,
        },
        "nonce_issued" => Decision::NonceIssued {
            host: f.text("host")?,
            nonce_digest: f.bytes("nonce_digest")?,
        },
        "appraisal" => {
            let host = f.text("host")?;
            let evidence_digest = f.bytes("evidence_digest")?;
            let policy_id = f.text("policy_id")?;
            let policy_hash = f.bytes("policy_hash")?;
            let verdict = match f.text("verdict")?.as_str() {
                "pass" => Verdict::Pass,
                "fail" => Verdict::Fail,
                _ => {
                    return Err(AuditError::LeafField {
                        field: "verdict",
                        expected: "\"pass\" or \"fail\"",
                    })
                }
            };
            let Value::Array(items) = f.take("failures")? else {
                return Err(AuditError::LeafField {
                    field: "failures",
                    expected: "array",
                });
            };
            let failures = items
                .into_iter()
                .map(|i| as_text(i, "failures"))
                .collect::<Result<Vec<_>, _>>()?;
            let tpm_clock = f
                .take_opt("tpm_clock")
                .map(ClockBaseline::from_value)
                .transpose()?;
            let nonce_digest = f.opt_bytes("nonce_digest")?;
            let policy_signer = f.opt_text("policy_signer")?;
            // Absent when empty: an empty array is not canonical.
            let warnings = match f.take_opt("warnings") {
                None => Vec::new(),
                Some(Value::Array(items)) if !items.is_empty() => items
                    .into_iter()
                    .map(|i| as_text(i, "warnings"))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err(AuditError::LeafField {
                        field: "warnings",
                        expected: "non-empty array (absent when empty)",
                    })
                }
            };
            Decision::Appraisal {
                host,
                evidence_digest,
                policy_id,
                policy_hash,
                verdict,
                failures,
                tpm_clock,
                nonce_digest,
                policy_signer,
                warnings,
            }
        }
        "token_minted" => Decision::TokenMinted {
            cti: f.text("cti")?,
            sub: f.text("sub")?,
            aud: f.text("aud")?,
            exp: f.int("exp")?,
            parent_cti: f.opt_text("parent_cti")?,
            token_digest: f.bytes("token_digest")?,
        },
        "token_revoked" => Decision::TokenRevoked {
            cti: f.text("cti")?,
            reason: f.text("reason")?,
        },
        "host_revoked" => Decision::HostRevoked {
            host: f.text("host")?,
            reason: f.text("reason")?,
        },
        "request_key_certified" => Decision::RequestKeyCertified {
            host: f.text("host")?,
            key_name: f.bytes("key_name")?,
        },
        "workload_revoked" => Decision::WorkloadRevoked {
            workload: f.text("workload")?,
            reason: f.text("reason")?,
        },
        "host_state_changed" => Decision::HostStateChanged {
            host: f.text("host")?,
            from: f.text("from")?,
            to: f.text("to")?,
            reason: f.text("reason")?,
        },
        "policy_activated" => Decision::PolicyActivated {
            policy_id: f.text("policy_id")?,
            policy_hash: f.bytes("policy_hash")?,
            previous_policy_hash: f.opt_bytes("previous_policy_hash")?,
        },
        "operator_action" => Decision::OperatorAction {
            who: f.text("who")?,
            what: f.text("what")?,
        },
        _ => return Err(AuditError::LeafUnknownKind { kind }),
    };
    f.finish()?;
    Ok(d)
}
