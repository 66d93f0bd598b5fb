//! Cursor pagination: ids are time-ordered, so the cursor is simply the last id returned.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn validate(self) -> Result<PageRequest> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if let Some(cursor) = &self.cursor
            && (cursor.len() > 64
                || !cursor
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(Error::invalid(
                "cursor",
                "is not a cursor this API returned",
            ));
        }
        Ok(PageRequest {
            limit,
            cursor: self.cursor,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A list served whole (short by nature, or capped at its newest), in the same shape
    /// as every paged list: no `next_cursor`.
    pub fn whole(data: Vec<T>) -> Self {
        Self {
            data,
            next_cursor: None,
        }
    }

    /// `rows` holds up to `limit + 1` items: the extra one only says another page exists.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: usize,
        cursor_of: impl Fn(&R) -> String,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(&cursor_of)
        } else {
            None
        };
        Self {
            data: rows.into_iter().map(map).collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    OldestFirst,
    NewestFirst,
}

/// Applies a page request to a query ordered by a time-ordered id column: the cursor, the
/// order, and one row more than the limit (it only says another page exists).
pub fn page_query<E: sea_orm::EntityTrait>(
    query: sea_orm::Select<E>,
    id: E::Column,
    page: &PageRequest,
    direction: Direction,
) -> sea_orm::Select<E> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let query = match (page.cursor.as_deref(), direction) {
        (Some(cursor), Direction::NewestFirst) => query.filter(id.lt(cursor.to_string())),
        (Some(cursor), Direction::OldestFirst) => query.filter(id.gt(cursor.to_string())),
        (None, _) => query,
    };
    let query = match direction {
        Direction::NewestFirst => query.order_by_desc(id),
        Direction::OldestFirst => query.order_by_asc(id),
    };
    query.limit(page.limit as u64 + 1)
}
