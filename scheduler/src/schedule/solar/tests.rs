//! Solar tests: validation, search behaviour, and the PyEphem reference fixtures.

use chrono::{DateTime, Utc};

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&Utc)
}

const ALL_EVENTS: [SolarEvent; 9] = [
    SolarEvent::Sunrise,
    SolarEvent::Sunset,
    SolarEvent::SolarNoon,
    SolarEvent::DawnCivil,
    SolarEvent::DawnNautical,
    SolarEvent::DawnAstronomical,
    SolarEvent::DuskCivil,
    SolarEvent::DuskNautical,
    SolarEvent::DuskAstronomical,
];

fn event_named(name: &str) -> SolarEvent {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn event_names_are_celerys() {
    let names: Vec<String> = ALL_EVENTS
        .iter()
        .map(|e| {
            serde_json::to_value(e)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "sunrise",
            "sunset",
            "solar_noon",
            "dawn_civil",
            "dawn_nautical",
            "dawn_astronomical",
            "dusk_civil",
            "dusk_nautical",
            "dusk_astronomical",
        ]
    );
}

#[test]
fn validates_the_place() {
    let err = |lat: f64, lon: f64| SolarSchedule::new(SolarEvent::Sunrise, lat, lon).unwrap_err();
    let e = err(91.0, 0.0);
    assert_eq!(e.field, SolarField::Latitude);
    assert_eq!(e.message, "latitude 91 is out of range -90 to 90");
    assert_eq!(
        err(-90.5, 0.0).message,
        "latitude -90.5 is out of range -90 to 90"
    );
    let e = err(0.0, 180.25);
    assert_eq!(e.field, SolarField::Longitude);
    assert_eq!(e.message, "longitude 180.25 is out of range -180 to 180");
    assert_eq!(
        err(f64::NAN, 0.0).message,
        "latitude must be a finite number, got NaN"
    );
    assert_eq!(
        err(0.0, f64::INFINITY).message,
        "longitude must be a finite number, got inf"
    );
    for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
        assert!(SolarSchedule::new(SolarEvent::Sunset, lat, lon).is_ok());
    }
}

#[test]
fn next_after_is_strict_and_whole_seconds() {
    let s = SolarSchedule::new(SolarEvent::Sunrise, 52.52, 13.405).unwrap();
    let first = s.next_after(at("2026-06-01T00:00:00Z")).unwrap();
    assert_eq!(first.timestamp_subsec_nanos(), 0);
    // Berlin sunrise on 2026-06-01 is 02:49:42 UTC by PyEphem (04:49 CEST).
    assert_eq!(
        first.format("%Y-%m-%dT%H:%M").to_string(),
        "2026-06-01T02:49"
    );
    let second = s.next_after(first).unwrap();
    assert!(second > first);
    assert_eq!(second.format("%Y-%m-%d").to_string(), "2026-06-02");
    // Just before the fire instant returns it; at it returns the next day's.
    assert_eq!(
        s.next_after(first - chrono::Duration::seconds(1)),
        Some(first)
    );
    assert_eq!(
        s.next_after(first - chrono::Duration::milliseconds(1)),
        Some(first)
    );
}

#[test]
fn consecutive_events_are_about_a_day_apart_everywhere() {
    for event in ALL_EVENTS {
        for (lat, lon) in [
            (0.0, 0.0),
            (45.0, -120.0),
            (-45.0, 170.0),
            (30.0, 179.9),
            (-20.0, -179.9),
        ] {
            let s = SolarSchedule::new(event, lat, lon).unwrap();
            let mut cursor = at("2026-01-01T00:00:00Z");
            for _ in 0..400 {
                let next = s.next_after(cursor).unwrap();
                let gap = (next - cursor).num_seconds();
                assert!(gap > 0, "{event:?} at {lat},{lon} after {cursor}");
                if cursor > at("2026-01-02T00:00:00Z") {
                    // Day length varies, but one event per ~24 h in these places.
                    assert!(
                        (86_400 - 1_800..=86_400 + 1_800).contains(&gap),
                        "{event:?} {lat},{lon} {cursor} -> {next}"
                    );
                }
                cursor = next;
            }
        }
    }
}

#[test]
fn polar_night_is_skipped() {
    // Longyearbyen: no sunrise between late October and mid February.
    let s = SolarSchedule::new(SolarEvent::Sunrise, 78.22, 15.65).unwrap();
    let next = s.next_after(at("2026-11-15T00:00:00Z")).unwrap();
    assert_eq!(next.format("%Y-%m").to_string(), "2027-02");
    // Midnight sun: no sunset from late April to late August.
    let s = SolarSchedule::new(SolarEvent::Sunset, 78.22, 15.65).unwrap();
    let next = s.next_after(at("2026-05-15T00:00:00Z")).unwrap();
    assert_eq!(next.format("%Y-%m").to_string(), "2026-08");
}

#[test]
fn the_poles_have_one_crossing_a_year() {
    // At the pole the Sun's altitude is its declination: it rises once, around the March
    // equinox, and sets once, around the September one. (PyEphem refuses every day at exactly
    // +-90 degrees; we report the physical crossing.)
    let rise = SolarSchedule::new(SolarEvent::Sunrise, 90.0, 0.0).unwrap();
    let r = rise.next_after(at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(r.format("%Y-%m").to_string(), "2026-03");
    let again = rise.next_after(r).unwrap();
    assert_eq!(again.format("%Y-%m").to_string(), "2027-03");
    let set = SolarSchedule::new(SolarEvent::Sunset, -90.0, 0.0).unwrap();
    let s = set.next_after(at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(s.format("%Y-%m").to_string(), "2026-03");
}

#[test]
fn solar_noon_always_happens() {
    for lat in [-90.0, -78.0, 0.0, 69.65, 90.0] {
        let s = SolarSchedule::new(SolarEvent::SolarNoon, lat, 18.96).unwrap();
        let mut cursor = at("2026-12-01T00:00:00Z");
        for _ in 0..40 {
            let next = s.next_after(cursor).unwrap();
            let gap = (next - cursor).num_seconds();
            assert!(gap > 0 && gap <= 86_400 + 60, "{lat}: {cursor} -> {next}");
            cursor = next;
        }
    }
}

#[test]
fn edge_instants_do_not_panic_or_loop() {
    let s = SolarSchedule::new(SolarEvent::DuskAstronomical, 89.0, 0.0).unwrap();
    assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
    assert_eq!(s.next_after(DateTime::<Utc>::MIN_UTC), None);
    assert_eq!(s.next_after(at("9999-12-31T00:00:00Z")), None);
    assert!(s.next_after(at("2900-01-01T00:00:00Z")).is_some());
    assert!(s.next_after(at("1100-01-01T00:00:00Z")).is_some());
}

/// One row of `fixtures/solar_reference.csv` (see `fixtures/README.md`).
struct Row {
    event: SolarEvent,
    latitude: f64,
    longitude: f64,
    after: DateTime<Utc>,
    expected: Option<DateTime<Utc>>,
    threshold: bool,
}

fn rows() -> Vec<Row> {
    let text = include_str!("../fixtures/solar_reference.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("event,latitude,longitude,after_utc,expected_utc,class")
    );
    lines
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 6, "{line}");
            Row {
                event: event_named(cols[0]),
                latitude: cols[1].parse().unwrap(),
                longitude: cols[2].parse().unwrap(),
                after: at(cols[3]),
                expected: (cols[4] != "none").then(|| at(cols[4])),
                threshold: match cols[5] {
                    "normal" => false,
                    "threshold" => true,
                    other => panic!("class {other}"),
                },
            }
        })
        .collect()
}

fn seconds_apart(ours: Option<DateTime<Utc>>, theirs: Option<DateTime<Utc>>) -> f64 {
    match (ours, theirs) {
        (Some(o), Some(t)) => (o - t).num_milliseconds().abs() as f64 / 1000.0,
        (None, None) => 0.0,
        _ => f64::INFINITY,
    }
}

/// The fixture tolerances; README.md in fixtures/ explains both numbers.
const NORMAL_TOLERANCE_S: f64 = 60.0;
const THRESHOLD_TOLERANCE_S: f64 = 60.0;

#[test]
fn matches_pyephem_reference_fixtures() {
    let rows = rows();
    assert!(rows.len() > 10_000);
    let bands: [(&str, f64, f64); 4] = [
        ("tropical |lat| < 23.5", 0.0, 23.5),
        ("mid 23.5 <= |lat| < 55", 23.5, 55.0),
        ("high 55 <= |lat| < 66.5", 55.0, 66.5),
        ("polar |lat| >= 66.5", 66.5, 91.0),
    ];
    // Per band: (rows, max error normal, max error threshold, threshold rows).
    let mut stats = [(0usize, 0f64, 0f64, 0usize); 4];
    let mut failures = Vec::new();
    let mut straddled = 0;
    for row in &rows {
        let s = SolarSchedule::new(row.event, row.latitude, row.longitude).unwrap();
        let ours = s.next_after(row.after);
        let band = bands
            .iter()
            .position(|(_, lo, hi)| row.latitude.abs() >= *lo && row.latitude.abs() < *hi)
            .unwrap();
        let stat = &mut stats[band];
        stat.0 += 1;
        let tolerance = if row.threshold {
            THRESHOLD_TOLERANCE_S
        } else {
            NORMAL_TOLERANCE_S
        };
        let mut error = seconds_apart(ours, row.expected);
        if error > tolerance {
            straddled += 1;
            // `after` may fall between our instant of an event and PyEphem's: we then answer
            // the event after it (ours came first) or this one when PyEphem's came first.
            let margin = chrono::Duration::seconds(tolerance as i64);
            let ours_straddled = s.next_after(row.after - margin);
            let theirs_straddled = ours
                .filter(|o| *o - row.after <= margin)
                .and_then(|o| s.next_after(o));
            error = error
                .min(seconds_apart(ours_straddled, row.expected))
                .min(seconds_apart(theirs_straddled, row.expected));
        }
        if row.threshold {
            stat.2 = stat.2.max(error);
            stat.3 += 1;
        } else {
            stat.1 = stat.1.max(error);
        }
        if error > tolerance {
            failures.push(format!(
                "{:?} at {},{} after {}: ours {:?}, PyEphem {:?} ({})",
                row.event,
                row.latitude,
                row.longitude,
                row.after,
                ours,
                row.expected,
                if row.threshold { "threshold" } else { "normal" }
            ));
        }
    }
    for ((name, _, _), (n, normal, threshold, nt)) in bands.iter().zip(stats) {
        eprintln!(
            "{name}: {n} rows, max error {normal:.1} s; {nt} threshold rows, max error {threshold:.1} s"
        );
    }
    eprintln!("rows where `after` fell between our event and PyEphem's: {straddled}");
    assert!(
        failures.is_empty(),
        "{} of {} rows out of tolerance:\n{}",
        failures.len(),
        rows.len(),
        failures
            .iter()
            .take(400)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = SolarEvent> {
        prop::sample::select(ALL_EVENTS.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The fire set is well defined: every instant between `after` and the answer gets the
        /// same answer, the answer is strictly after, and the next one is a different event.
        #[test]
        fn fires_are_consistent_strict_and_distinct(
            event in any_event(),
            latitude in -90.0f64..=90.0,
            longitude in -180.0f64..=180.0,
            after in 1_577_836_800i64..2_051_222_400i64,
            fraction in 0.0f64..1.0,
        ) {
            let s = SolarSchedule::new(event, latitude, longitude).unwrap();
            let after = DateTime::from_timestamp(after, 0).unwrap();
            // Every event happens at least once a year everywhere, so the two-year bound never
            // runs out.
            let first = s.next_after(after);
            prop_assert!(first.is_some(), "{event:?} {latitude},{longitude} {after}");
            let first = first.unwrap();
            prop_assert!(first > after);
            let span = (first - after).num_seconds() - 1;
            let between = after + chrono::Duration::seconds((span as f64 * fraction) as i64);
            prop_assert_eq!(s.next_after(between), Some(first));
            prop_assert_eq!(s.next_after(first - chrono::Duration::seconds(1)), Some(first));
            if let Some(second) = s.next_after(first) {
                prop_assert!((second - first).num_seconds() >= 60, "{first} then {second}");
            }
        }
    }
}
