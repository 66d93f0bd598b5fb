//! The vault: every credential and webhook secret is sealed with AES-256-GCM, envelope style.
//! Each secret has its own random data key; the data key is wrapped by the master key. Both
//! ciphertexts are bound (as associated data) to the tenant and secret id, so a row copied
//! into another tenant's place does not open. Rotating the master key re-wraps data keys only.

pub mod master_key;
mod sealed;
pub use sealed::rewrap as rewrap_sealed;

pub use master_key::MasterKey;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use anyhow::Context;
use sea_orm::ColumnTrait;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::error::{Error, Result};
use crate::ids::{SecretId, TenantId};
use crate::secret::SecretString;
use crate::store::entities::vault_secret;

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Vault {
    master: MasterKey,
}

impl Vault {
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    pub fn key_id(&self) -> &str {
        self.master.id()
    }

    /// Encrypts `plaintext` under a fresh data key and stores it; returns the new secret's id.
    pub async fn store<C: ConnectionTrait>(
        &self,
        db: &C,
        tenant: &TenantId,
        plaintext: &str,
    ) -> Result<SecretId> {
        let id = SecretId::generate();
        let aad = associated_data(tenant, &id);
        let data_key = crate::random::bytes::<32>()?;
        let ciphertext = seal(&data_key, plaintext.as_bytes(), &aad)?;
        let wrapped_key = seal(self.master.bytes(), &data_key, &aad)?;
        vault_secret::ActiveModel {
            id: Set(id.clone()),
            tenant_id: Set(tenant.clone()),
            key_id: Set(self.master.id().to_string()),
            wrapped_key: Set(wrapped_key),
            ciphertext: Set(ciphertext),
            created_at: Set(chrono::Utc::now()),
        }
        .insert(db)
        .await?;
        Ok(id)
    }

    pub async fn load<C: ConnectionTrait>(
        &self,
        db: &C,
        tenant: &TenantId,
        id: &SecretId,
    ) -> Result<SecretString> {
        let row = vault_secret::Entity::find_in_tenant(tenant)
            .filter(vault_secret::Column::Id.eq(id.clone()))
            .one(db)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("secret {id} is missing")))?;
        self.open(&row)
    }

    pub fn open(&self, row: &vault_secret::Model) -> Result<SecretString> {
        if row.key_id != self.master.id() {
            return Err(Error::Internal(anyhow::anyhow!(
                "secret {} is wrapped by master key {}, but this process has {}",
                row.id,
                row.key_id,
                self.master.id()
            )));
        }
        let aad = associated_data(&row.tenant_id, &row.id);
        let data_key = open(self.master.bytes(), &row.wrapped_key, &aad)?;
        let data_key: [u8; 32] = data_key
            .try_into()
            .map_err(|_| anyhow::anyhow!("secret {}: data key has the wrong length", row.id))?;
        let plaintext = open(&data_key, &row.ciphertext, &aad)?;
        let text = String::from_utf8(plaintext)
            .map_err(|_| anyhow::anyhow!("secret {} is not UTF-8", row.id))?;
        Ok(SecretString::new(text))
    }

    pub async fn delete<C: ConnectionTrait>(
        &self,
        db: &C,
        tenant: &TenantId,
        id: &SecretId,
    ) -> Result<()> {
        vault_secret::Entity::delete_many()
            .filter(vault_secret::Column::TenantId.eq(tenant.clone()))
            .filter(vault_secret::Column::Id.eq(id.clone()))
            .exec(db)
            .await?;
        Ok(())
    }
}

/// Re-wraps every secret's data key from `old` to `new`, inside the caller's transaction (the
/// rotation re-wraps other sealed values in the same one); ciphertexts are untouched.
/// Returns how many secrets were re-wrapped. Rows already under `new` are skipped, so an
/// interrupted rotation can simply be run again.
pub async fn rewrap_secrets<C: ConnectionTrait>(
    txn: &C,
    old: &MasterKey,
    new: &MasterKey,
) -> anyhow::Result<usize> {
    let rows = vault_secret::Entity::find().all(txn).await?;
    let mut rewrapped = 0;
    for row in rows {
        if row.key_id == new.id() {
            continue;
        }
        if row.key_id != old.id() {
            anyhow::bail!(
                "secret {} is wrapped by master key {}, which is neither the old nor the new key",
                row.id,
                row.key_id
            );
        }
        let aad = associated_data(&row.tenant_id, &row.id);
        let data_key = open(old.bytes(), &row.wrapped_key, &aad)
            .with_context(|| format!("unwrapping secret {}", row.id))?;
        let wrapped = seal(new.bytes(), &data_key, &aad)?;
        let mut active: vault_secret::ActiveModel = row.into();
        active.wrapped_key = Set(wrapped);
        active.key_id = Set(new.id().to_string());
        active.update(txn).await?;
        rewrapped += 1;
    }
    Ok(rewrapped)
}

fn associated_data(tenant: &TenantId, id: &SecretId) -> Vec<u8> {
    format!("synchub/v1/{tenant}/{id}").into_bytes()
}

fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("bad key length"))?;
    let nonce_bytes = crate::random::bytes::<NONCE_LEN>()?;
    let nonce = aes_gcm::Nonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        anyhow::bail!("ciphertext too short");
    }
    let (nonce_bytes, body) = sealed.split_at(NONCE_LEN);
    let nonce_array: [u8; NONCE_LEN] = nonce_bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad nonce"))?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("bad key length"))?;
    cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce_array),
            Payload { msg: body, aad },
        )
        .map_err(|_| anyhow::anyhow!("decryption failed: wrong key or tampered ciphertext"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_binding() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"shpat_123", b"ten_a/sec_1").unwrap();
        assert_eq!(open(&key, &sealed, b"ten_a/sec_1").unwrap(), b"shpat_123");
        assert!(
            open(&key, &sealed, b"ten_b/sec_1").is_err(),
            "bound to its tenant"
        );
        assert!(
            open(&[8u8; 32], &sealed, b"ten_a/sec_1").is_err(),
            "wrong key"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&key, &tampered, b"ten_a/sec_1").is_err(), "tampered");
        assert!(
            open(&key, &sealed[..10], b"ten_a/sec_1").is_err(),
            "truncated"
        );
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let key = [1u8; 32];
        assert_ne!(
            seal(&key, b"x", b"a").unwrap(),
            seal(&key, b"x", b"a").unwrap()
        );
    }
}
