//! Installation-wide key/value settings, such as the generated JWT secret of an embedded install.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub value: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The key under which an embedded (SQLite) install keeps its generated HS256 secret.
pub const JWT_SECRET_KEY: &str = "jwt_secret";
