use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use super::manifest::{ConnectorKind, FieldSpec, Manifest, WebhookScheme};

/// The built-in manifests from `connectors/`, compiled in so the binary runs from anywhere.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "shopify.toml",
        include_str!("../../connectors/shopify.toml"),
    ),
    (
        "amazon-sp-api.toml",
        include_str!("../../connectors/amazon-sp-api.toml"),
    ),
    ("shopee.toml", include_str!("../../connectors/shopee.toml")),
    (
        "tiktok-shop.toml",
        include_str!("../../connectors/tiktok-shop.toml"),
    ),
    (
        "generic-rest-erp.toml",
        include_str!("../../connectors/generic-rest-erp.toml"),
    ),
    (
        "lingxing.toml",
        include_str!("../../connectors/lingxing.toml"),
    ),
    ("mabang.toml", include_str!("../../connectors/mabang.toml")),
];

#[derive(Debug, Clone)]
pub struct ConnectorRegistry {
    by_name: BTreeMap<String, Arc<Manifest>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectorSummary {
    pub name: String,
    pub display_name: String,
    pub kind: ConnectorKind,
    pub version: String,
    pub docs_url: String,
    pub settings: Vec<FieldSpec>,
    pub credentials: Vec<FieldSpec>,
    pub webhook_scheme: Option<WebhookScheme>,
}

impl ConnectorRegistry {
    pub fn built_in() -> anyhow::Result<Self> {
        let mut by_name = BTreeMap::new();
        for (file, text) in BUILT_IN {
            let manifest = Manifest::parse(text).map_err(|problems| {
                anyhow::anyhow!(
                    "connectors/{file}: {}",
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", p.field, p.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            let name = manifest.name.clone();
            if by_name.insert(name.clone(), Arc::new(manifest)).is_some() {
                return Err(anyhow::anyhow!("two built-in manifests are named {name}"))
                    .context("loading connectors");
            }
        }
        Ok(Self { by_name })
    }

    /// The registry with `manifest` in place of the one of the same name (or added).
    pub fn with_manifest(mut self, manifest: Manifest) -> Self {
        self.by_name
            .insert(manifest.name.clone(), Arc::new(manifest));
        self
    }

    /// The connectors' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Manifest>> {
        self.by_name.get(name).cloned()
    }

    pub fn summaries(&self) -> Vec<ConnectorSummary> {
        self.by_name
            .values()
            .map(|m| ConnectorSummary {
                name: m.name.clone(),
                display_name: m.display_name.clone(),
                kind: m.kind,
                version: m.version.clone(),
                docs_url: m.docs_url.clone(),
                settings: m.settings.clone(),
                credentials: m.credentials.clone(),
                webhook_scheme: m.webhook.as_ref().map(|w| w.scheme),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_manifest_loads() {
        let registry = ConnectorRegistry::built_in().unwrap();
        for name in [
            "shopify",
            "amazon-sp-api",
            "shopee",
            "tiktok-shop",
            "generic-rest-erp",
        ] {
            assert!(registry.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn lint_reports_every_problem_with_its_path() {
        let problems = Manifest::parse(
            r#"
            name = "Bad Name"
            display_name = "x"
            kind = "erp"
            version = "one"
            docs_url = "https://example.com"
            [[settings]]
            name = "region"
            type = "enum"
            description = "d"
            [webhook]
            scheme = "hmac_sha256_header"
            event_id_pointer = "id"
            "#,
        )
        .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "version",
                "settings[0].values",
                "webhook.signature_header",
                "webhook.event_id_pointer"
            ]
        );
    }
}
