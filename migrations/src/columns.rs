//! Column shapes the later migrations share: ids, timestamps, JSON, counters.

use sea_orm_migration::prelude::*;

fn column(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
}

/// A typed id (`con_…`) or a short code.
pub fn id(name: &str) -> ColumnDef {
    column(name).string_len(64).not_null().to_owned()
}

pub fn id_or_null(name: &str) -> ColumnDef {
    column(name).string_len(64).null().to_owned()
}

pub fn text(name: &str) -> ColumnDef {
    column(name).text().not_null().to_owned()
}

pub fn text_or_null(name: &str) -> ColumnDef {
    column(name).text().null().to_owned()
}

pub fn json(name: &str) -> ColumnDef {
    column(name).json_binary().not_null().to_owned()
}

pub fn json_or_null(name: &str) -> ColumnDef {
    column(name).json_binary().null().to_owned()
}

/// A count that existing rows start at 0.
pub fn counter(name: &str) -> ColumnDef {
    column(name).big_integer().not_null().default(0).to_owned()
}

pub fn integer(name: &str) -> ColumnDef {
    column(name).big_integer().not_null().to_owned()
}

/// An instant, in UTC.
pub fn at(name: &str) -> ColumnDef {
    column(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

pub fn at_or_null(name: &str) -> ColumnDef {
    column(name).timestamp_with_time_zone().null().to_owned()
}
