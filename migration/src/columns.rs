//! Adding and dropping columns, one statement per column: SQLite's ALTER TABLE takes one at a
//! time; creating a plain index; tying a table's rows to their tenant.

use sea_orm_migration::prelude::*;

/// Adds `columns` to `table`.
pub async fn add(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for mut column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table(table.clone())
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Drops `columns` from `table`.
pub async fn drop<C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    columns: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table(table.clone())
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Creates the index `name` on `table` over `columns`, in that order.
pub async fn index<C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    name: &str,
    columns: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

/// A tenant's rows go with the tenant.
pub fn cascade_to_tenant(
    table: impl IntoIden + 'static,
    column: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}
