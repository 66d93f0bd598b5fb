//! What a deployment will do before it does it: how many connections each step switches,
//! in which order, and what the new manifest changes.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::model::Strategy;
use crate::connectors::Manifest;
use crate::error::{Error, Result};
use crate::store::entities::connection;

/// Cumulative connection counts per step: canary percentages, rolling batches, or all at once.
pub(super) fn step_counts(
    strategy: Strategy,
    percents: Option<&[u32]>,
    batch: Option<u32>,
    targets: usize,
) -> Result<Vec<usize>> {
    let counts = match strategy {
        Strategy::Immediate | Strategy::BlueGreen => vec![targets],
        Strategy::Canary => {
            let percents = percents.unwrap_or(&[1, 10, 50, 100]);
            if percents.is_empty()
                || percents.last() != Some(&100)
                || percents.windows(2).any(|w| w[0] >= w[1])
                || percents.iter().any(|p| *p == 0 || *p > 100)
            {
                return Err(Error::invalid(
                    "steps",
                    "rising percentages from 1 to 100, ending at 100",
                ));
            }
            let mut counts: Vec<usize> = percents
                .iter()
                .map(|p| ((targets * *p as usize).div_ceil(100)).max(1))
                .collect();
            counts.dedup();
            counts
        }
        Strategy::Rolling => {
            let batch = batch.unwrap_or(1);
            if batch == 0 {
                return Err(Error::invalid("batch_size", "at least 1"));
            }
            (1..=targets.div_ceil(batch as usize))
                .map(|i| (i * batch as usize).min(targets))
                .collect()
        }
    };
    Ok(counts)
}

/// Which top-level sections of the manifest change, and how many operations.
pub(super) fn manifest_diff(from: &Manifest, to: &Manifest) -> Value {
    let (from, to) = (
        serde_json::to_value(from).unwrap_or_default(),
        serde_json::to_value(to).unwrap_or_default(),
    );
    let keys: BTreeSet<&String> = from
        .as_object()
        .into_iter()
        .chain(to.as_object())
        .flat_map(|o| o.keys())
        .collect();
    let changed: Vec<&String> = keys
        .into_iter()
        .filter(|k| from.get(k.as_str()) != to.get(k.as_str()))
        .collect();
    let operations = |v: &Value| -> BTreeSet<String> {
        v["operations"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (before, after) = (operations(&from), operations(&to));
    json!({
        "from_version": from["version"],
        "changed_sections": changed,
        "operations_added": after.difference(&before).collect::<Vec<_>>(),
        "operations_removed": before.difference(&after).collect::<Vec<_>>(),
        "operations_changed": before.intersection(&after).filter(|op| from["operations"][op.as_str()] != to["operations"][op.as_str()]).collect::<Vec<_>>(),
    })
}

/// A stable order for switching: sandbox connections first, then by a hash of the id.
pub(super) fn position_key(row: &connection::Model) -> (bool, [u8; 32]) {
    (
        row.environment != "sandbox",
        Sha256::digest(row.id.as_str().as_bytes()).into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_connections_cumulatively() {
        let canary = |p: &[u32], n| step_counts(Strategy::Canary, Some(p), None, n).unwrap();
        assert_eq!(canary(&[1, 10, 50, 100], 1000), vec![10, 100, 500, 1000]);
        assert_eq!(
            canary(&[1, 10, 50, 100], 4),
            vec![1, 2, 4],
            "tiny steps merge"
        );
        assert_eq!(
            step_counts(Strategy::Rolling, None, Some(3), 7).unwrap(),
            vec![3, 6, 7]
        );
        assert_eq!(
            step_counts(Strategy::BlueGreen, None, None, 5).unwrap(),
            vec![5]
        );
        assert!(step_counts(Strategy::Canary, Some(&[10, 50]), None, 5).is_err());
        assert!(step_counts(Strategy::Canary, Some(&[50, 10, 100]), None, 5).is_err());
        assert!(step_counts(Strategy::Rolling, None, Some(0), 5).is_err());
    }
}
