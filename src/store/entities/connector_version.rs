use sea_orm::entity::prelude::*;

/// A published connector version: immutable once written.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "connector_versions")]
pub struct Model {
    /// "" for a built-in version every tenant sees; else the publishing tenant's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub connector: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: String,
    /// The parsed manifest, as JSON.
    #[sea_orm(column_type = "JsonBinary")]
    pub manifest: Json,
    /// SHA-256 of the manifest's canonical JSON: comments and layout do not change it.
    pub content_hash: String,
    pub changelog: String,
    pub publisher: String,
    pub published_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
