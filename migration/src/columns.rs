//! Adding and dropping columns, one statement per column: SQLite's ALTER TABLE takes one at a
//! time.

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
