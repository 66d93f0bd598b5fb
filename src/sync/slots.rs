//! Each connector version's share of this process's worker slots. A run takes a slot of the
//! version it will call (`connector@version`, the marketplace end of its flow) before it is
//! claimed; when that version's share is in use the run is put back for a moment instead of
//! waiting inside a worker slot. So a canary whose every call hangs holds at most its share,
//! and the stable version's runs keep the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The version a run calls: what its metrics are labelled with and what its slot is counted
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionKey {
    pub connector: String,
    pub version: String,
}

impl std::fmt::Display for VersionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.connector, self.version)
    }
}

#[derive(Clone)]
pub struct VersionSlots {
    per_version: usize,
    shares: Arc<Mutex<HashMap<VersionKey, Arc<Semaphore>>>>,
}

impl VersionSlots {
    /// `per_version` slots for each version (at least one).
    pub fn new(per_version: usize) -> Self {
        Self {
            per_version: per_version.max(1),
            shares: Arc::default(),
        }
    }

    /// The share of a process with `concurrency` worker slots: all but a quarter of them
    /// (at least one kept back when there are two or more), so a version in trouble always
    /// leaves the rest some slots, and a process running one version idles few.
    pub fn for_concurrency(concurrency: usize) -> Self {
        Self::new(concurrency.saturating_sub(concurrency.div_ceil(4)))
    }

    /// A slot of `key`'s share, or None while all of them are in use.
    pub fn try_take(&self, key: &VersionKey) -> Option<OwnedSemaphorePermit> {
        let share = {
            let mut shares = self
                .shares
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shares
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_version)))
                .clone()
        };
        share.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: &str) -> VersionKey {
        VersionKey {
            connector: "shopify".into(),
            version: version.into(),
        }
    }

    #[test]
    fn a_version_in_use_leaves_the_others_their_share() {
        let slots = VersionSlots::for_concurrency(4);
        let canary: Vec<_> = (0..3)
            .filter_map(|_| slots.try_take(&key("1.1.0")))
            .collect();
        assert_eq!(canary.len(), 3, "three of four slots");
        assert!(
            slots.try_take(&key("1.1.0")).is_none(),
            "its share is spent"
        );
        let stable = slots.try_take(&key("1.0.0"));
        assert!(stable.is_some(), "the stable version still runs");
        drop(canary);
        assert!(
            slots.try_take(&key("1.1.0")).is_some(),
            "given back when done"
        );
    }
}
