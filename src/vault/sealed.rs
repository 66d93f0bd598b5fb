//! Values sealed for storage outside the secrets table, such as a response kept for an
//! idempotency replay that may carry a new API token. Same envelope as the secrets: a fresh
//! data key per value, wrapped by the master key, both bound to what the value belongs to.
//! Layout: key id length (1 byte), key id, wrapped key length (2 bytes, big endian),
//! wrapped key, ciphertext.

use super::{MasterKey, Vault, open, seal};
use crate::error::{Error, Result};

impl Vault {
    /// Seals `plaintext` for the owner named by `binding` (e.g. `idempotency/<scope>/<key>`).
    pub fn seal_bytes(&self, binding: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let data_key = crate::random::bytes::<32>()?;
        let aad = aad(binding);
        let wrapped = seal(self.master.bytes(), &data_key, &aad)?;
        let ciphertext = seal(&data_key, plaintext, &aad)?;
        Ok(layout(self.master.id(), &wrapped, &ciphertext)?)
    }

    /// Opens what [`Vault::seal_bytes`] sealed for the same binding.
    pub fn open_bytes(&self, binding: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let (key_id, wrapped, ciphertext) = split(sealed)?;
        if key_id != self.master.id() {
            return Err(Error::Internal(anyhow::anyhow!(
                "a value sealed by master key {key_id}, but this process has {}",
                self.master.id()
            )));
        }
        let aad = aad(binding);
        let data_key: [u8; 32] = open(self.master.bytes(), wrapped, &aad)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("a sealed value's data key has the wrong length"))?;
        Ok(open(&data_key, ciphertext, &aad)?)
    }
}

/// Re-wraps a sealed value's data key from `old` to `new`; None when it is already under
/// `new`. The ciphertext is untouched.
pub fn rewrap(
    old: &MasterKey,
    new: &MasterKey,
    binding: &str,
    sealed: &[u8],
) -> anyhow::Result<Option<Vec<u8>>> {
    let (key_id, wrapped, ciphertext) = split(sealed).map_err(|e| anyhow::anyhow!("{e}"))?;
    if key_id == new.id() {
        return Ok(None);
    }
    if key_id != old.id() {
        anyhow::bail!("a value sealed by master key {key_id}, neither the old nor the new key");
    }
    let aad = aad(binding);
    let data_key = open(old.bytes(), wrapped, &aad)?;
    let wrapped = seal(new.bytes(), &data_key, &aad)?;
    Ok(Some(layout(new.id(), &wrapped, ciphertext)?))
}

fn aad(binding: &str) -> Vec<u8> {
    format!("synchub/v1/sealed/{binding}").into_bytes()
}

fn layout(key_id: &str, wrapped: &[u8], ciphertext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let id_len = u8::try_from(key_id.len()).map_err(|_| anyhow::anyhow!("key id too long"))?;
    let wrapped_len =
        u16::try_from(wrapped.len()).map_err(|_| anyhow::anyhow!("wrapped key too long"))?;
    let mut out = Vec::with_capacity(3 + key_id.len() + wrapped.len() + ciphertext.len());
    out.push(id_len);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&wrapped_len.to_be_bytes());
    out.extend_from_slice(wrapped);
    out.extend_from_slice(ciphertext);
    Ok(out)
}

fn split(sealed: &[u8]) -> Result<(&str, &[u8], &[u8])> {
    let malformed = || Error::Internal(anyhow::anyhow!("a sealed value is malformed"));
    let (&id_len, rest) = sealed.split_first().ok_or_else(malformed)?;
    let (key_id, rest) = rest
        .split_at_checked(usize::from(id_len))
        .ok_or_else(malformed)?;
    let key_id = std::str::from_utf8(key_id).map_err(|_| malformed())?;
    let (len, rest) = rest.split_at_checked(2).ok_or_else(malformed)?;
    let wrapped_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (wrapped, ciphertext) = rest.split_at_checked(wrapped_len).ok_or_else(malformed)?;
    Ok((key_id, wrapped, ciphertext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    #[test]
    fn sealed_values_open_only_for_their_binding_and_survive_a_rotation() {
        let vault = Vault::new(key(1));
        let sealed = vault
            .seal_bytes("idempotency/a/k1", b"shk_secret_token")
            .unwrap();
        assert!(!sealed.windows(16).any(|w| w == b"shk_secret_token"));
        assert_eq!(
            vault.open_bytes("idempotency/a/k1", &sealed).unwrap(),
            b"shk_secret_token"
        );
        assert!(
            vault.open_bytes("idempotency/b/k1", &sealed).is_err(),
            "bound to its owner"
        );
        assert!(
            vault.open_bytes("idempotency/a/k1", &sealed[..20]).is_err(),
            "truncated"
        );

        let rotated = rewrap(&key(1), &key(2), "idempotency/a/k1", &sealed)
            .unwrap()
            .unwrap();
        let after = Vault::new(key(2));
        assert_eq!(
            after.open_bytes("idempotency/a/k1", &rotated).unwrap(),
            b"shk_secret_token"
        );
        assert!(
            vault.open_bytes("idempotency/a/k1", &rotated).is_err(),
            "old key retired"
        );
        assert!(
            rewrap(&key(1), &key(2), "idempotency/a/k1", &rotated)
                .unwrap()
                .is_none()
        );
    }
}
