//! `next_after` throughput for typical crontabs in DST zones, for solar events and for RFC 5545
//! rules.
//!
//! Each iteration asks for the next fire after an instant that walks through 2026 in steps
//! that are not a multiple of any schedule's period, so the search starts from ever different
//! places (including both DST changes) instead of answering one cached question.

use std::hint::black_box;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hookbeat_scheduler::schedule::crontab::CronSchedule;
use hookbeat_scheduler::schedule::solar::{SolarEvent, SolarSchedule};
use std::sync::Arc;

use hookbeat_scheduler::calendar::{Calendar, CalendarDefinition, Exclusions};
use hookbeat_scheduler::schedule::{ScheduleSpec, Timing};

/// Instants spread over 2026, 7919 s (a prime, ~2.2 h) apart.
fn instants() -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    (0..4096)
        .map(|i| start + chrono::Duration::seconds(i * 7919))
        .collect()
}

fn crontab(c: &mut Criterion) {
    let afters = instants();
    let mut group = c.benchmark_group("crontab_next_after");
    group.throughput(Throughput::Elements(1));
    for (expression, zone) in [
        ("*/5 * * * *", "Europe/Berlin"),
        ("0 9 * * MON-FRI", "Europe/Berlin"),
        ("30 2 * * *", "Europe/Berlin"),
        ("*/5 * * * *", "America/New_York"),
        ("0 9 * * MON-FRI", "America/New_York"),
        ("30 2 * * *", "America/New_York"),
        ("0 0 29 2 *", "UTC"),
    ] {
        let schedule = CronSchedule::new(expression, zone, None, None, None).unwrap();
        let mut i = 0;
        group.bench_function(format!("{expression} {zone}"), |b| {
            b.iter(|| {
                i = (i + 1) % afters.len();
                black_box(schedule.next_after(black_box(afters[i])))
            })
        });
    }
    group.finish();
}

fn solar(c: &mut Criterion) {
    let afters = instants();
    let mut group = c.benchmark_group("solar_next_after");
    group.throughput(Throughput::Elements(1));
    for (event, lat, lon, place) in [
        (SolarEvent::Sunrise, 52.52, 13.405, "Berlin"),
        (SolarEvent::Sunset, 40.7128, -74.006, "New York"),
        (SolarEvent::DuskCivil, -33.87, 151.21, "Sydney"),
        (SolarEvent::SolarNoon, 52.52, 13.405, "Berlin"),
        (SolarEvent::Sunrise, 78.22, 15.65, "Longyearbyen"),
    ] {
        let schedule = SolarSchedule::new(event, lat, lon).unwrap();
        let mut i = 0;
        group.bench_function(format!("{event:?} {place}"), |b| {
            b.iter(|| {
                i = (i + 1) % afters.len();
                black_box(schedule.next_after(black_box(afters[i])))
            })
        });
    }
    group.finish();
}

fn rrule(c: &mut Criterion) {
    let afters = instants();
    let mut group = c.benchmark_group("rrule_next_after");
    group.throughput(Throughput::Elements(1));
    for (rule, zone, dtstart) in [
        (
            "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
            "Europe/Berlin",
            "2000-01-01T00:00:00",
        ),
        (
            "FREQ=MINUTELY;INTERVAL=5",
            "Europe/Berlin",
            "1990-01-01T00:00:00",
        ),
        (
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0",
            "America/New_York",
            "2010-01-01T00:00:00",
        ),
        (
            "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH;BYHOUR=12;BYMINUTE=0",
            "America/New_York",
            "1990-01-01T00:00:00",
        ),
        ("FREQ=HOURLY;INTERVAL=3", "UTC", "2025-06-01T00:30:00"),
        (
            "FREQ=DAILY;COUNT=1000",
            "Europe/Berlin",
            "2025-06-01T08:00:00",
        ),
    ] {
        let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "kind": "rrule", "rule": rule, "timezone": zone, "dtstart": dtstart
        }))
        .unwrap();
        let compiled = spec.compile("schedule").unwrap();
        let mut i = 0;
        group.bench_function(format!("{rule} {zone}"), |b| {
            b.iter(|| {
                i = (i + 1) % afters.len();
                black_box(compiled.next_after(black_box(afters[i])))
            })
        });
    }
    group.finish();
}

/// What the worker pays per planning of an rrule schedule: compiling the spec (COUNT is walked
/// then) and one next fire.
fn rrule_compiled_each_time(c: &mut Criterion) {
    let afters = instants();
    let mut group = c.benchmark_group("rrule_compile_and_next_after");
    group.throughput(Throughput::Elements(1));
    for (rule, dtstart) in [
        (
            "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
            "2000-01-01T00:00:00",
        ),
        ("FREQ=DAILY;COUNT=1000", "2025-06-01T08:00:00"),
    ] {
        let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "kind": "rrule", "rule": rule, "timezone": "Europe/Berlin", "dtstart": dtstart
        }))
        .unwrap();
        let mut i = 0;
        group.bench_function(rule, |b| {
            b.iter(|| {
                i = (i + 1) % afters.len();
                let compiled = spec.compile("schedule").unwrap();
                black_box(compiled.next_after(black_box(afters[i])))
            })
        });
    }
    group.finish();
}

/// A weekday crontab in Berlin excluding a year of German holidays: listed dates, the Christmas
/// week as a range, and May Day by rule.
fn calendar_excluded(c: &mut Criterion) {
    let afters = instants();
    let mut group = c.benchmark_group("calendar_excluded_next_after");
    group.throughput(Throughput::Elements(1));
    let holidays: CalendarDefinition = serde_json::from_value(serde_json::json!({
        "timezone": "Europe/Berlin",
        "dates": ["2026-01-01", "2026-04-03", "2026-04-06", "2026-05-14", "2026-05-25",
                  "2026-10-03", "2027-01-01"],
        "ranges": [{"from": "2026-12-24", "to": "2026-12-31"}],
        "rules": ["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"],
    }))
    .unwrap();
    let exclude = Exclusions::new(vec![Arc::new(Calendar::compile(&holidays, "").unwrap())]);
    for (expression, zone) in [("0 9 * * MON-FRI", "Europe/Berlin"), ("*/5 * * * *", "UTC")] {
        let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "kind": "crontab", "expression": expression, "timezone": zone
        }))
        .unwrap();
        let timing = Timing {
            exclude: exclude.clone(),
            ..Timing::of(spec.compile("schedule").unwrap())
        };
        let mut i = 0;
        group.bench_function(format!("{expression} {zone}"), |b| {
            b.iter(|| {
                i = (i + 1) % afters.len();
                black_box(timing.next_fire(black_box(afters[i]), 0))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    crontab,
    solar,
    rrule,
    rrule_compiled_each_time,
    calendar_excluded
);
criterion_main!(benches);
