//! sea-orm entities, one per table. Tenant scoping lives here: each tenant-owned entity has a
//! `find_in_tenant` constructor, and handlers never build an unscoped query.

/// A state column stored as text: each variant's text is written once and serves the
/// database (sea-orm), `as_str` and `Display`; the API's serde name is the same text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            sea_orm::EnumIter,
            sea_orm::DeriveActiveEnum,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        // The texts are the snake_case names (a test holds them to it): utoipa's schema
        // follows rename_all, not a per-variant rename.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[sea_orm(string_value = $text)]
                $variant,
            )+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod alert;
pub mod alert_channel;
pub mod alert_delivery;
pub mod alert_event;
pub mod alert_rule;
pub mod api_token;
pub mod audit_event;
pub mod connect_session;
pub mod connection;
pub mod connector_version;
pub mod deployment;
pub mod deployment_event;
pub mod deployment_target;
pub mod flow;
pub mod idempotency_key;
pub mod platform_app;
pub mod record;
pub mod run;
pub mod tenant;
pub mod vault_secret;
pub mod webhook_event;

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::{
        alert_delivery::DeliveryStatus, connect_session::SessionStatus,
        connection::AuthorizationStatus, deployment::DeploymentState,
        deployment_target::TargetState, run::RunStatus,
    };

    /// The database text, the API's JSON and `as_str` agree for every state.
    fn agree<E>()
    where
        E: Iterable + sea_orm::ActiveEnum<Value = String> + serde::Serialize + Copy,
    {
        for state in E::iter() {
            assert_eq!(serde_json::to_value(state).unwrap(), state.to_value());
        }
    }

    #[test]
    fn state_texts_agree_everywhere() {
        agree::<RunStatus>();
        agree::<DeploymentState>();
        agree::<TargetState>();
        agree::<DeliveryStatus>();
        agree::<SessionStatus>();
        agree::<AuthorizationStatus>();
        assert_eq!(RunStatus::Dead.as_str(), "dead");
        assert_eq!(
            DeploymentState::WaitingForWindow.to_string(),
            "waiting_for_window"
        );
    }
}
