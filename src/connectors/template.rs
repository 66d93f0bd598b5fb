//! `{name}` placeholders in a manifest's paths, queries and bodies. Pure functions: the
//! client says where a name's value comes from (the record being written, the cursor, a
//! setting).

use serde_json::{Map, Value};

/// Values a call's placeholders take besides settings: the cursor, a record's fields, the
/// ids a lookup found.
#[derive(Debug, Clone, Default)]
pub struct Vars(Map<String, Value>);

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_string(), value.into());
        self
    }

    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.0.insert(name.to_string(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The value as text: strings as they are, numbers and booleans printed.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(as_text)
    }
}

pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A placeholder's name: a lowercase identifier. Other braces are text (a GraphQL query).
fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Fills every `{name}` with `value(name)`; Err(name) for the first one without a value.
pub fn fill_text(
    template: &str,
    value: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let name = rest[start + 1..]
            .find('}')
            .map(|end| &rest[start + 1..start + 1 + end])
            .filter(|name| is_name(name));
        match name {
            Some(name) => {
                out.push_str(&value(name).ok_or_else(|| name.to_string())?);
                rest = &rest[start + name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The name of a string that is exactly one placeholder, `{name}`.
fn whole_placeholder(s: &str) -> Option<&str> {
    let name = s.strip_prefix('{')?.strip_suffix('}')?;
    is_name(name).then_some(name)
}

/// Fills a JSON body: a string that is exactly `{name}` becomes `typed(name)` with its type,
/// placeholders inside longer strings are filled as text. Keys are left as they are.
pub fn fill_value(
    template: &Value,
    typed: &impl Fn(&str) -> Option<Value>,
) -> Result<Value, String> {
    Ok(match template {
        Value::String(s) => match whole_placeholder(s) {
            Some(name) => typed(name).ok_or_else(|| name.to_string())?,
            None => Value::String(fill_text(s, &|name| {
                typed(name).as_ref().and_then(as_text)
            })?),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| fill_value(item, typed))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), fill_value(v, typed)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_placeholders_are_filled_and_a_missing_one_is_named() {
        let value = |name: &str| (name == "sku").then(|| "A-1".to_string());
        assert_eq!(
            fill_text("/items/{sku}/stock", &value).as_deref(),
            Ok("/items/A-1/stock")
        );
        assert_eq!(fill_text("/items/{seller}", &value), Err("seller".into()));
        assert_eq!(fill_text("no {brace", &value).as_deref(), Ok("no {brace"));
        assert_eq!(
            fill_text("query { v(q: $q) { id } } {sku}", &value).as_deref(),
            Ok("query { v(q: $q) { id } } A-1"),
            "braces around anything but a name are text"
        );
    }

    #[test]
    fn a_whole_placeholder_keeps_its_type_and_an_inner_one_becomes_text() {
        let vars = Vars::new().with("quantity", 7).with("sku", "A-1");
        let typed = |name: &str| vars.get(name).cloned();
        let body = json!({"q": "{quantity}", "label": "sku:{sku}", "list": [{"n": "{quantity}"}], "fixed": 3});
        assert_eq!(
            fill_value(&body, &typed),
            Ok(json!({"q": 7, "label": "sku:A-1", "list": [{"n": 7}], "fixed": 3}))
        );
        assert_eq!(
            fill_value(&json!({"x": "{missing}"}), &typed),
            Err("missing".into())
        );
    }
}
