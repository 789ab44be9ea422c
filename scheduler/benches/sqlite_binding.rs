//! Binding the values of a multi-row statement on SQLite, as the worker's group writes do (a
//! write-back of 512 results binds 512 × 9 values; a batch of new runs 500 × 11).
//!
//! Each iteration runs `SELECT COUNT(*) FROM (VALUES …)` over `rows` rows of 9 placeholders,
//! made by `sql::statement` as every hand-written statement is, on an in-memory database: the
//! time is the driver binding the values and SQLite stepping a statement that reads no table.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookbeat_scheduler::sql;
use sea_orm::{ConnectionTrait, Database, DbBackend, Value};

const COLUMNS: usize = 9;

fn group_write_binding(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let db = runtime
        .block_on(Database::connect("sqlite::memory:"))
        .expect("an in-memory database");
    let mut group = c.benchmark_group("sqlite_values_binding");
    for rows in [16usize, 128, 512] {
        let text = format!(
            "SELECT COUNT(*) AS n FROM (VALUES {})",
            sql::placeholder_rows(1, rows, COLUMNS)
        );
        let values: Vec<Value> = (0..rows * COLUMNS)
            .map(|i| Value::from(format!("value-{i}")))
            .collect();
        group.throughput(Throughput::Elements((rows * COLUMNS) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, _| {
            b.iter(|| {
                let statement = sql::statement(DbBackend::Sqlite, &text, values.clone());
                let row = runtime
                    .block_on(db.query_one(statement))
                    .expect("the statement runs");
                black_box(row)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, group_write_binding);
criterion_main!(benches);
