//! The catalogue every simulated marketplace lists and the stock each account was told.
//! Listed SKUs are `SKU-0` to `SKU-999`; any other SKU is unknown to every marketplace (the
//! case of a product the seller never listed there). Platform ids encode the SKU, so a
//! simulated platform can read the SKU back from its own id.

use std::collections::{BTreeMap, HashMap};

/// Platform product ids start here: `ID_BASE + n` is `SKU-n`.
const ID_BASE: u64 = 8_000_000_000;

pub fn listed(sku: &str) -> bool {
    number(sku).is_some()
}

fn number(sku: &str) -> Option<u64> {
    let n: u64 = sku.strip_prefix("SKU-")?.parse().ok()?;
    (n < 1000).then_some(n)
}

/// The platform's id for a listed SKU.
pub fn item_id(sku: &str) -> Option<u64> {
    number(sku).map(|n| ID_BASE + n)
}

/// The SKU a platform id stands for.
pub fn sku_of(id: u64) -> Option<String> {
    id.checked_sub(ID_BASE)
        .filter(|n| *n < 1000)
        .map(|n| format!("SKU-{n}"))
}

/// The lines of a simulated order, the same on every call for an order id: (SKU, units,
/// unit price in cents).
pub fn lines_for(order_id: &str) -> Vec<(String, i64, i64)> {
    let hash = order_id
        .bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..1 + hash % 2)
        .map(|i| {
            let salt = hash.rotate_left(7 * i as u32 + 3);
            (
                format!("SKU-{}", salt % 50),
                1 + (salt % 3) as i64,
                500 + (salt % 4_000) as i64,
            )
        })
        .collect()
}

/// Cents as a decimal string.
pub fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What each marketplace account was last told about each SKU's stock.
#[derive(Default)]
pub struct Stock {
    /// "platform:account" -> SKU -> units.
    levels: HashMap<String, BTreeMap<String, i64>>,
    pub writes: u64,
}

impl Stock {
    pub fn set(&mut self, platform: &str, account: &str, sku: &str, quantity: i64) {
        self.writes += 1;
        self.levels
            .entry(format!("{platform}:{account}"))
            .or_default()
            .insert(sku.to_string(), quantity);
    }

    pub fn levels(&self, platform: &str, account: &str) -> BTreeMap<String, i64> {
        self.levels
            .get(&format!("{platform}:{account}"))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_listed_skus_only() {
        assert_eq!(item_id("SKU-7").and_then(sku_of).as_deref(), Some("SKU-7"));
        assert_eq!(item_id("SKU-1000"), None);
        assert_eq!(item_id("GHOST-1"), None);
        assert_eq!(sku_of(42), None);
    }

    #[test]
    fn an_order_has_the_same_lines_every_time() {
        assert_eq!(lines_for("111-2"), lines_for("111-2"));
        assert!(
            lines_for("111-2")
                .iter()
                .all(|(sku, q, _)| listed(sku) && *q >= 1)
        );
        assert_eq!(money(1999), "19.99");
    }
}
