//! SEV-SNP hosts: registration at the first affirming appraisal, in the
//! same transaction as the appraisal, the host status and the token.

use sqlx::Row;

use super::{Store, StoreError};

/// What the broker keeps of a registered SNP host (all from a verified report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpHostRecord {
    pub host_id: String,
    pub chip_id: Vec<u8>,
    pub measurement: Vec<u8>,
    pub host_data: Vec<u8>,
    /// `Milan`, `Genoa` or `Turin`.
    pub product: String,
    /// `vcek` or `vlek`.
    pub signer: String,
    /// SHA-256 of the VCEK/VLEK (kept in `hosts.ek_cert_digest`).
    pub signer_cert_digest: Vec<u8>,
    pub registered_at: i64,
}

impl Store {
    /// The registration of SNP host `id`, if any.
    pub async fn snp_host(&self, id: &str) -> Result<Option<SnpHostRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let row = sqlx::query(
                    "SELECT s.*, h.ek_cert_digest FROM snp_hosts s JOIN hosts h ON h.id = s.host_id WHERE s.host_id = $1",
                )
                .bind(id)
                .fetch_optional(s.pool())
                .await?;
                row.map(|r| {
                    Ok(SnpHostRecord {
                        host_id: r.try_get("host_id")?,
                        chip_id: r.try_get("chip_id")?,
                        measurement: r.try_get("measurement")?,
                        host_data: r.try_get("host_data")?,
                        product: r.try_get("product")?,
                        signer: r.try_get("signer")?,
                        signer_cert_digest: r.try_get("ek_cert_digest")?,
                        registered_at: r.try_get("registered_at")?,
                    })
                })
                .transpose()
            }
        }
    }
}

impl super::sqlite::SqliteStore {
    /// Create a new SEV-SNP host's `hosts` and `snp_hosts` rows, inside the
    /// caller's transaction (the audit writer's, with the decision's leaves).
    pub(super) async fn register_snp_host_in(
        tx: &mut sqlx::SqliteConnection,
        h: &SnpHostRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
                "INSERT INTO hosts (id, status, ek_public, ek_cert_digest, ak_public, ak_name, enrolled_at)
                 VALUES ($1, 'enrolled', x'', $2, x'', x'', $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&h.host_id)
            .bind(&h.signer_cert_digest)
            .bind(h.registered_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
                "INSERT INTO snp_hosts (host_id, chip_id, measurement, host_data, product, signer, registered_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host_id) DO NOTHING",
            )
            .bind(&h.host_id)
            .bind(&h.chip_id)
            .bind(&h.measurement)
            .bind(&h.host_data)
            .bind(&h.product)
            .bind(&h.signer)
            .bind(h.registered_at)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
