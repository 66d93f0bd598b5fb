//! Reading lists page by page, whatever the platform's pagination (Link header, next
//! token, page number).

use serde_json::Value;

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass};
use crate::connectors::spec::{OperationSpec, Pagination};
use crate::connectors::template::Vars;

/// Where the next page is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum NextPage {
    Url(String),
    Token(String),
    Number(u32),
}

pub struct ListPage {
    pub records: Vec<Value>,
    pub next: Option<NextPage>,
}

impl ConnectorClient {
    /// One page of a list operation: from the start (with the cursor and the call's values)
    /// or from `next`.
    pub async fn list_page(
        &self,
        operation: &str,
        vars: &Vars,
        next: Option<&NextPage>,
    ) -> Result<ListPage, CallError> {
        let op = self.operation(operation)?;
        let api_path = self.api_path(op, vars)?;
        let mut url = format!("{}{api_path}", self.base_url()?);
        let mut query = self.query(op, vars);
        let mut body = self.body(op, vars)?;
        // Where the page's position goes: the query, or the JSON body of a POST list.
        let mut place = |param: &str, value: u32, in_body: bool| {
            if in_body {
                let object = body.get_or_insert_with(|| Value::Object(Default::default()));
                if let Some(object) = object.as_object_mut() {
                    object.insert(param.to_string(), Value::from(value));
                }
            } else {
                query.push((param.to_string(), value.to_string()));
            }
        };
        match (next, &op.pagination) {
            (Some(NextPage::Url(next_url)), _) => {
                url = next_url.clone();
                query.clear();
            }
            (Some(NextPage::Token(token)), Some(Pagination::Token { param, .. })) => {
                query.push((param.clone(), token.clone()))
            }
            (
                Some(NextPage::Number(n)),
                Some(
                    Pagination::PageNumber { param, in_body, .. }
                    | Pagination::Offset { param, in_body, .. },
                ),
            ) => place(param, *n, *in_body),
            (
                None,
                Some(Pagination::PageNumber {
                    param,
                    start,
                    in_body,
                    ..
                }),
            ) => place(param, *start, *in_body),
            (None, Some(Pagination::Offset { param, in_body, .. })) => place(param, 0, *in_body),
            _ => {}
        }
        let method = op.method.as_reqwest();
        let (headers, mut body) = self
            .send(op, &api_path, || {
                let request = self.http.request(method.clone(), &url).query(&query);
                match &body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        // What pagination reads from the answer is read before the records are moved out.
        let token = match &op.pagination {
            Some(Pagination::Token { response, .. }) => body
                .pointer(response)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            _ => None,
        };
        let page_count = match &op.pagination {
            Some(Pagination::PageNumber {
                pages: Some(pointer),
                ..
            }) => Some(
                body.pointer(pointer)
                    .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok())),
            ),
            _ => None,
        };
        let records = take_records_at(&mut body, op.records.as_deref()).ok_or_else(|| {
            CallError::new(
                ErrorClass::SchemaMismatch,
                format!("no record list at {:?}", op.records),
            )
        })?;
        let next = match &op.pagination {
            None => None,
            Some(Pagination::LinkHeader) => headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .map(NextPage::Url),
            Some(Pagination::Token { .. }) => token.map(NextPage::Token),
            Some(Pagination::PageNumber { start, size, .. }) => {
                let current = match next {
                    Some(NextPage::Number(n)) => *n,
                    _ => *start,
                };
                let more = match page_count {
                    Some(count) => count.is_some_and(|count| u64::from(current) < count),
                    None => records.len() as u32 >= *size,
                };
                more.then_some(NextPage::Number(current + 1))
            }
            Some(Pagination::Offset { size, .. }) => {
                let current = match next {
                    Some(NextPage::Number(n)) => *n,
                    _ => 0,
                };
                (records.len() as u32 >= *size).then_some(NextPage::Number(current + *size))
            }
        };
        Ok(ListPage { records, next })
    }

    /// Every record of a list operation, page after page (a detail or lookup call).
    pub async fn list_all(&self, operation: &str, vars: &Vars) -> Result<Vec<Value>, CallError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self.list_page(operation, vars, next.as_ref()).await?;
            all.extend(page.records);
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// The operation's query; a parameter whose placeholder has no value is left out (the
    /// cursor on a first run).
    pub(super) fn query(&self, op: &OperationSpec, vars: &Vars) -> Vec<(String, String)> {
        op.query
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), self.fill(v, vars).ok()?)))
            .collect()
    }
}
/// The records at `pointer` (the whole answer without one): an array, or one object for an
/// operation that reads a single record. Moved out of the answer, not copied: a page's
/// records are most of its memory.
pub(super) fn take_records_at(body: &mut Value, pointer: Option<&str>) -> Option<Vec<Value>> {
    match body.pointer_mut(pointer.unwrap_or(""))? {
        Value::Array(records) => Some(std::mem::take(records)),
        record @ Value::Object(_) => Some(vec![record.take()]),
        _ => None,
    }
}

/// The `rel="next"` target of one Link header value (RFC 8288).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}
