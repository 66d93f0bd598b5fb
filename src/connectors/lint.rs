//! Checks of a manifest's declarative part against the rest of it, with field paths: rate
//! limits, operations, the mappings' and writes' operations, auth fields, base URLs.

use super::manifest::Manifest;
use crate::error::FieldError;

/// Checks operations against the rest of the manifest, with field paths.
pub fn lint_operations(manifest: &Manifest) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let groups: Vec<&str> = manifest
        .rate_limits
        .iter()
        .map(|r| r.group.as_str())
        .collect();
    for (i, limit) in manifest.rate_limits.iter().enumerate() {
        if !(limit.rate > 0.0
            && limit.rate.is_finite()
            && limit.burst >= 1.0
            && limit.burst.is_finite())
        {
            problems.push(FieldError::new(
                format!("rate_limits[{i}]"),
                "rate must be > 0 and burst >= 1",
            ));
        }
    }
    for (name, op) in &manifest.operations {
        match op.group.as_deref() {
            Some(group) if !groups.contains(&group) => problems.push(FieldError::new(
                format!("operations.{name}.group"),
                "names no rate_limits group",
            )),
            None if op.concurrency.is_none_or(|cap| cap == 0) => problems.push(FieldError::new(
                format!("operations.{name}.group"),
                "is required unless the operation has a concurrency cap",
            )),
            _ => {}
        }
        if !op.path.starts_with('/') {
            problems.push(FieldError::new(
                format!("operations.{name}.path"),
                "must start with /",
            ));
        }
        if op
            .batch
            .as_ref()
            .is_some_and(|b| !(1..=10_000).contains(&b.max))
        {
            problems.push(FieldError::new(
                format!("operations.{name}.batch.max"),
                "must be between 1 and 10000",
            ));
        }
        if op
            .records
            .as_deref()
            .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
        {
            problems.push(FieldError::new(
                format!("operations.{name}.records"),
                "a JSON pointer starts with /",
            ));
        }
    }
    let has_operation = |name: &str| manifest.operations.contains_key(name);
    if let Some(detail) = manifest
        .mappings
        .order
        .as_ref()
        .and_then(|o| o.detail.as_ref())
    {
        if !has_operation(&detail.operation) {
            problems.push(FieldError::new(
                "mappings.order.detail.operation",
                format!("{} is not an operation", detail.operation),
            ));
        }
        if !(1..=100).contains(&detail.per_call) {
            problems.push(FieldError::new(
                "mappings.order.detail.per_call",
                "must be between 1 and 100",
            ));
        }
    }
    let check_operations = manifest
        .checks
        .read
        .iter()
        .map(|op| ("checks.read", op))
        .chain(
            manifest
                .checks
                .webhooks
                .iter()
                .map(|w| ("checks.webhooks.operation", &w.operation)),
        );
    for (field, operation) in check_operations {
        if !has_operation(operation) {
            problems.push(FieldError::new(
                field,
                format!("{operation} is not an operation"),
            ));
        }
    }
    for (kind, write) in &manifest.writes {
        if !["stock", "shipment"].contains(&kind.as_str()) {
            problems.push(FieldError::new(
                format!("writes.{kind}"),
                "writes are stock or shipment",
            ));
        }
        if !has_operation(&write.operation) {
            problems.push(FieldError::new(
                format!("writes.{kind}.operation"),
                format!("{} is not an operation", write.operation),
            ));
        }
        if let Some(lookup) = &write.lookup
            && !has_operation(&lookup.operation)
        {
            problems.push(FieldError::new(
                format!("writes.{kind}.lookup.operation"),
                format!("{} is not an operation", lookup.operation),
            ));
        }
    }
    for (name, op) in &manifest.operations {
        if let Some(confirm) = &op.confirm
            && !has_operation(&confirm.operation)
        {
            problems.push(FieldError::new(
                format!("operations.{name}.confirm.operation"),
                format!("{} is not an operation", confirm.operation),
            ));
        }
        let gateway = matches!(manifest.auth, Some(super::spec::AuthSpec::Mabang { .. }));
        if gateway && op.action.is_none() {
            problems.push(FieldError::new(
                format!("operations.{name}.action"),
                "a gateway operation names its action",
            ));
        }
    }
    if let Some(auth) = &manifest.auth {
        for credential in auth.credentials() {
            if !manifest.credentials.iter().any(|f| f.name == credential) {
                problems.push(FieldError::new(
                    "auth.credential",
                    format!("{credential} is not a credentials field"),
                ));
            }
        }
        for setting in auth.settings() {
            if !manifest.settings.iter().any(|f| f.name == setting) {
                problems.push(FieldError::new(
                    "auth.setting",
                    format!("{setting} is not a settings field"),
                ));
            }
        }
    }
    if !manifest.operations.is_empty() && manifest.environments.is_empty() {
        problems.push(FieldError::new(
            "environments",
            "operations need a base URL per environment",
        ));
    }
    for (environment, template) in &manifest.environments {
        if let Err(message) = lint_base_url(manifest, template) {
            problems.push(FieldError::new(
                format!("environments.{environment}"),
                message,
            ));
        }
    }
    problems
}

/// A base URL template is an http(s) URL whose host is fixed, or built only from settings
/// that cannot carry anything but a host (`type = "host"` or an enum), or is exactly one
/// `type = "url"` setting. A free-text setting in the host could choose any address, port
/// or path. Whatever it becomes is checked again by the outbound guard on every call.
fn lint_base_url(manifest: &Manifest, template: &str) -> Result<(), String> {
    use super::manifest::FieldType;
    let field_type = |name: &str| {
        manifest
            .settings
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.field_type)
    };
    let trimmed = template.trim();
    if let Some(name) = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
        && !name.contains(['{', '}'])
    {
        return match field_type(name) {
            Some(FieldType::Url) => Ok(()),
            _ => Err(format!("{{{name}}} must name a settings field of type url")),
        };
    }
    let Some(rest) = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
    else {
        return Err("must be an http or https URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let mut placeholders = authority.split('{').skip(1);
    placeholders.try_for_each(|part| {
        let name = part.split('}').next().unwrap_or_default();
        match field_type(name) {
            Some(FieldType::Host | FieldType::Enum) => Ok(()),
            Some(_) => Err(format!(
                "{{{name}}} is in the host: it must be a settings field of type host or enum"
            )),
            None => Err(format!("{{{name}}} is not a settings field")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::manifest::Manifest;

    const LINGXING: &str = include_str!("../../connectors/lingxing.toml");

    /// An operation may go without a rate-limit group only when a cap on calls in flight
    /// bounds it.
    #[test]
    fn an_operation_needs_a_group_or_a_cap() {
        assert!(Manifest::parse(LINGXING).is_ok(), "capped, no group");
        let unbounded = LINGXING.replacen("concurrency = 10\n", "", 1);
        let problems = Manifest::parse(&unbounded).expect_err("neither group nor cap");
        assert!(
            problems
                .iter()
                .any(|p| p.field == "operations.create_orders.group"),
            "{problems:?}"
        );
    }
}
