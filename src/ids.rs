//! Typed, prefixed ids (`ten_…`, `con_…`): time-ordered (UUIDv7), so they sort by creation and
//! serve as pagination cursors. Each kind has its own type, so a tenant id cannot be passed
//! where a connection id is expected.

macro_rules! typed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(
            Clone,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            sea_orm::DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Accepts only well-formed ids of this kind; anything else is "not found" upstream.
            pub fn parse(raw: &str) -> Option<Self> {
                let rest = raw.strip_prefix($prefix)?.strip_prefix('_')?;
                (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

typed_id!(TenantId, "ten");
typed_id!(TokenId, "tok");
typed_id!(SecretId, "sec");
typed_id!(ConnectionId, "con");
typed_id!(EventId, "evt");
typed_id!(AuditId, "aud");
typed_id!(FlowId, "flow");
typed_id!(RunId, "run");
typed_id!(DeploymentId, "dep");
typed_id!(DeploymentEventId, "dev");
typed_id!(AlertChannelId, "ach");
typed_id!(AlertEventId, "aev");
typed_id!(AlertRuleId, "arl");
typed_id!(AlertId, "alt");
typed_id!(AlertDeliveryId, "adl");
typed_id!(PlatformAppId, "pap");
typed_id!(ConnectSessionId, "cns");

impl TenantId {
    /// Owns what the operator sets for every tenant (default platform apps). No tenant is
    /// ever generated with it: generated ids are UUIDv7s, never all zeros.
    pub fn operator() -> Self {
        Self(format!("{}_{}", Self::PREFIX, "0".repeat(32)))
    }
}

impl EventId {
    /// Sorts after every event id generated before `at` and before every one generated at
    /// `at` or later (UUIDv7 leads with its milliseconds since the epoch, in hex): a bound
    /// for ranges of the primary key by age, never an id of an event.
    pub fn floor_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self(format!(
            "{}_{:012x}",
            Self::PREFIX,
            at.timestamp_millis().max(0)
        ))
    }

    /// An id as `generate` makes it, for an event received at `at` (a store seeded with
    /// history, as the retention tests do).
    pub fn generate_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        let timestamp = uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(at.timestamp()).unwrap_or(0),
            at.timestamp_subsec_nanos(),
        );
        Self(format!(
            "{}_{}",
            Self::PREFIX,
            uuid::Uuid::new_v7(timestamp).simple()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_foreign_kinds() {
        let id = ConnectionId::generate();
        assert_eq!(ConnectionId::parse(id.as_str()), Some(id.clone()));
        assert!(TenantId::parse(id.as_str()).is_none());
        assert!(ConnectionId::parse("con_../../etc").is_none());
        assert!(ConnectionId::parse("").is_none());
    }

    #[test]
    fn an_event_id_floor_splits_ids_by_their_time() {
        let at = chrono::Utc::now() - chrono::Duration::days(30);
        let floor = EventId::floor_at(at);
        let just_before = EventId::generate_at(at - chrono::Duration::milliseconds(1));
        let at_it = EventId::generate_at(at);
        assert!(just_before < floor, "{just_before} {floor}");
        assert!(floor <= at_it, "{floor} {at_it}");
        assert!(floor < EventId::generate());
        assert_eq!(EventId::parse(at_it.as_str()), Some(at_it.clone()));
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = EventId::generate();
        let second = EventId::generate();
        assert!(first < second);
    }
}
