//! The master key: 32 bytes, given as base64 (`SYNCHUB_MASTER_KEY`) or generated once into the
//! data directory for local use. Its id is a fingerprint, so rows say which key wrapped them.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

pub const KEY_FILE: &str = "master.key";

#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let id = hex::encode(&digest[..8]);
        Self { bytes, id }
    }

    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self::from_bytes(crate::random::bytes::<32>()?))
    }

    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let decoded = STANDARD
            .decode(text.trim())
            .context("the master key must be base64")?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|v: Vec<u8>| {
            anyhow::anyhow!("the master key must be 32 bytes, got {}", v.len())
        })?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Reads `data_dir/master.key`, creating it (mode 0600) when absent. Returns whether it
    /// was generated now, so start-up can warn loudly.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Self, bool)> {
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            return Ok((
                Self::from_base64(&text).with_context(|| path.display().to_string())?,
                false,
            ));
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let key = Self::generate()?;
        write_private(&path, &key.to_base64())?;
        Ok((key, true))
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base64_and_reject_bad_lengths() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.id(), again.id());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("***").is_err());
    }

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = MasterKey::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (second, created) = MasterKey::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.id(), second.id());
    }
}
