use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

use crate::schedule::local::{gap_skips, local_fire, DstNote};
use crate::schedule::{CompiledSpec, ScheduleSpec};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn compile(spec: serde_json::Value) -> Result<CompiledSpec, (String, String)> {
    let mut spec = spec;
    spec["kind"] = "rrule".into();
    let parsed = ScheduleSpec::from_json(&spec, "schedule")
        .map_err(|e| (e[0].field.clone(), e[0].message.clone()))?;
    parsed
        .compile("schedule")
        .map_err(|e| (e[0].field.clone(), e[0].message.clone()))
}

fn rule(rule: &str, zone: &str, dtstart: &str) -> CompiledSpec {
    compile(serde_json::json!({"rule": rule, "timezone": zone, "dtstart": dtstart}))
        .unwrap_or_else(|e| panic!("{rule}: {e:?}"))
}

fn fires(spec: &CompiledSpec, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    let mut at = after;
    let mut out = Vec::new();
    while out.len() < count {
        match spec.next_after(at) {
            Some(next) => {
                assert!(next > at, "{next} is not after {at}");
                out.push(next);
                at = next;
            }
            None => break,
        }
    }
    out
}

#[derive(Deserialize)]
struct RfcExample {
    name: String,
    rule: String,
    dtstart: String,
    #[serde(default)]
    exdate: Vec<String>,
    expected: Vec<String>,
    /// Set when the rule goes on for ever: the RFC lists its first `limit` instances.
    limit: Option<usize>,
}

/// RFC 5545 §3.8.5.3's examples (those a scheduler can express), all in America/New_York from
/// the RFC's DTSTART, with the RFC's instances. A rule that ends must end exactly there.
#[test]
fn the_rfc_5545_examples_give_the_rfc_instances() {
    let examples: Vec<RfcExample> =
        serde_json::from_str(include_str!("../fixtures/rfc5545_examples.json")).unwrap();
    assert!(examples.len() >= 36, "{} examples", examples.len());
    for example in &examples {
        let spec = compile(serde_json::json!({
            "rule": example.rule,
            "timezone": "America/New_York",
            "dtstart": example.dtstart,
            "exdate": example.exdate,
        }))
        .unwrap_or_else(|e| panic!("{}: {e:?}", example.name));
        let expected: Vec<DateTime<Utc>> = example
            .expected
            .iter()
            .map(|s| {
                DateTime::<FixedOffset>::parse_from_rfc3339(s)
                    .unwrap()
                    .to_utc()
            })
            .collect();
        let start = t("1996-01-01T00:00:00Z");
        let wanted = example.limit.unwrap_or(expected.len() + 5);
        assert_eq!(fires(&spec, start, wanted), expected, "{}", example.name);
    }
}

/// The RFC's examples that it gives as two rules with the same instances.
#[test]
fn the_rfc_5545_equivalent_rules_agree() {
    let pairs = [
        (
            "FREQ=YEARLY;UNTIL=20000131T140000Z;BYMONTH=1;BYDAY=SU,MO,TU,WE,TH,FR,SA",
            "FREQ=DAILY;UNTIL=20000131T140000Z;BYMONTH=1",
            "1998-01-01T09:00:00",
            93,
        ),
        (
            "FREQ=WEEKLY;UNTIL=19971007T000000Z;WKST=SU;BYDAY=TU,TH",
            "FREQ=WEEKLY;COUNT=10;WKST=SU;BYDAY=TU,TH",
            "1997-09-02T09:00:00",
            10,
        ),
        (
            "FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40",
            "FREQ=MINUTELY;INTERVAL=20;BYHOUR=9,10,11,12,13,14,15,16",
            "1997-09-02T09:00:00",
            72,
        ),
    ];
    for (a, b, dtstart, count) in pairs {
        let start = t("1997-01-01T00:00:00Z");
        let one = fires(&rule(a, "America/New_York", dtstart), start, count);
        let other = fires(&rule(b, "America/New_York", dtstart), start, count);
        assert_eq!(one.len(), count, "{a}");
        assert_eq!(one, other, "{a} vs {b}");
        // The first instance is DTSTART, 09:00 in New York.
        let first = one[0].with_timezone(&chrono_tz::America::New_York);
        assert_eq!(
            first.naive_local().to_string(),
            dtstart.replace('T', " "),
            "{a}"
        );
    }
}

#[derive(Deserialize)]
struct Reference {
    rule: String,
    dtstart: String,
    queries: Vec<(String, Option<String>)>,
}

/// "The next instance after T" agrees with python-dateutil on 1,000 random rules and 8,000
/// queries, many of them years past DTSTART (where hookbeat starts the expansion at T's period).
#[test]
fn the_next_instance_agrees_with_python_dateutil() {
    let cases: Vec<Reference> =
        serde_json::from_str(include_str!("../fixtures/rrule_reference.json")).unwrap();
    assert_eq!(cases.len(), 1_000);
    let utc = |s: &str| s.parse::<chrono::NaiveDateTime>().unwrap().and_utc();
    let mut checked = 0;
    let mut refused = 0;
    for case in &cases {
        let spec = match compile(
            serde_json::json!({"rule": case.rule, "timezone": "UTC", "dtstart": case.dtstart}),
        ) {
            Ok(spec) => spec,
            Err((_, message)) => {
                // Only sub-hourly steps that do not repeat daily, filtered by hour, are refused.
                assert!(
                    message.contains("is not supported in a"),
                    "{}: {message}",
                    case.rule
                );
                refused += 1;
                continue;
            }
        };
        for (at, expected) in &case.queries {
            let found = spec.next_after(utc(at));
            assert_eq!(
                found,
                expected.as_deref().map(utc),
                "{} from {} after {at}",
                case.rule,
                case.dtstart
            );
            checked += 1;
        }
    }
    // The fixture is fixed: exactly these many of its rules are the refused shape.
    assert_eq!(refused, 13);
    assert_eq!(checked + 8 * refused, 8_000);
}

#[test]
fn the_last_friday_of_every_month_at_five_in_berlin() {
    let spec = rule(
        "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0",
        "Europe/Berlin",
        "2026-01-01T00:00:00",
    );
    assert_eq!(
        fires(&spec, t("2026-01-01T00:00:00Z"), 4),
        [
            t("2026-01-30T16:00:00Z"),
            t("2026-02-27T16:00:00Z"),
            t("2026-03-27T16:00:00Z"),
            // Summer time from March 29: 17:00 is 15:00 UTC.
            t("2026-04-24T15:00:00Z"),
        ]
    );
}

#[test]
fn a_minutely_rule_with_hours_and_weekdays_starting_on_a_saturday_fires_on_monday() {
    // 2026-11-28 is a Saturday.
    let spec = rule(
        "FREQ=MINUTELY;INTERVAL=15;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,10,11",
        "UTC",
        "2026-11-28T08:00:00",
    );
    let seen = fires(&spec, t("2026-11-28T00:00:00Z"), 13);
    assert_eq!(seen[0], t("2026-11-30T09:00:00Z"));
    assert_eq!(seen[11], t("2026-11-30T11:45:00Z"));
    assert_eq!(seen[12], t("2026-12-01T09:00:00Z"));
}

#[test]
fn a_fixed_time_in_a_spring_forward_gap_fires_once_at_the_gap_end() {
    // Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC. New York 2026-03-08:
    // 02:00 EST becomes 03:00 EDT at 07:00 UTC. Lord Howe 2026-10-04: 02:00 becomes 02:30
    // (+10:30 to +11:00) at 15:30 UTC the day before.
    let cases = [
        (
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "02:30",
            "2026-03-29T01:00:00Z",
        ),
        (
            "America/New_York",
            "2026-03-07T12:00:00Z",
            "02:30",
            "2026-03-08T07:00:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            "02:15",
            "2026-10-03T15:30:00Z",
        ),
    ];
    for (zone, after, time, expected) in cases {
        let spec = rule("FREQ=DAILY", zone, &format!("2026-01-01T{time}:00"));
        let seen = fires(&spec, t(after), 2);
        assert_eq!(seen[0], t(expected), "{zone}");
        assert_eq!(
            local_fire(&spec, seen[0]).dst,
            Some(DstNote::GapShifted),
            "{zone}"
        );
        assert!(seen[1] - seen[0] > Duration::hours(23), "{zone}");
        assert_eq!(local_fire(&spec, seen[1]).dst, None, "{zone}");
    }
}

#[test]
fn an_hourly_rule_skips_the_missing_hour_and_never_fires_twice() {
    let spec = rule("FREQ=HOURLY", "Europe/Berlin", "2026-01-01T00:00:00");
    let seen = fires(&spec, t("2026-03-28T23:30:00Z"), 4);
    // Local 01:00 (00:00Z), 02:00 does not exist (skipped), 03:00 (01:00Z), 04:00 (02:00Z).
    assert_eq!(
        seen,
        [
            t("2026-03-29T00:00:00Z"),
            t("2026-03-29T01:00:00Z"),
            t("2026-03-29T02:00:00Z"),
            t("2026-03-29T03:00:00Z"),
        ]
    );
    assert_eq!(
        gap_skips(&spec, t("2026-03-28T00:00:00Z"), t("2026-03-30T00:00:00Z")),
        [(t("2026-03-29T01:00:00Z"), 1)]
    );
    // Under shift the missing 02:00 collapses into the 03:00 fire: still one fire there.
    let shifted = compile(serde_json::json!({
        "rule": "FREQ=HOURLY", "timezone": "Europe/Berlin",
        "dtstart": "2026-01-01T00:00:00", "dst_gap": "shift"
    }))
    .unwrap();
    assert_eq!(fires(&shifted, t("2026-03-28T23:30:00Z"), 4), seen);
}

#[test]
fn a_fall_back_overlap_fires_once_for_a_fixed_time_and_twice_for_an_hourly_rule() {
    // New York 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC; 01:30 happens twice.
    let daily = rule("FREQ=DAILY", "America/New_York", "2026-01-01T01:30:00");
    assert_eq!(
        fires(&daily, t("2026-10-31T12:00:00Z"), 2),
        [t("2026-11-01T05:30:00Z"), t("2026-11-02T06:30:00Z")]
    );
    let hourly = rule(
        "FREQ=HOURLY;BYMINUTE=30",
        "America/New_York",
        "2026-01-01T00:00:00",
    );
    let seen = fires(&hourly, t("2026-11-01T04:00:00Z"), 4);
    assert_eq!(
        seen,
        [
            t("2026-11-01T04:30:00Z"),
            t("2026-11-01T05:30:00Z"),
            t("2026-11-01T06:30:00Z"),
            t("2026-11-01T07:30:00Z"),
        ]
    );
    assert_eq!(
        local_fire(&hourly, seen[1]).dst,
        Some(DstNote::OverlapFirst)
    );
    assert_eq!(
        local_fire(&hourly, seen[2]).dst,
        Some(DstNote::OverlapSecond)
    );
    // Asked from inside the first pass, the second 01:30 is still ahead.
    assert_eq!(
        hourly.next_after(t("2026-11-01T05:45:00Z")),
        Some(t("2026-11-01T06:30:00Z"))
    );
    // Lord Howe 2026-04-05: 02:00 (+11:00) becomes 01:30 (+10:30) at 15:00 UTC the day before.
    let half = rule(
        "FREQ=MINUTELY;INTERVAL=15",
        "Australia/Lord_Howe",
        "2026-01-01T00:00:00",
    );
    let seen = fires(&half, t("2026-04-04T14:40:00Z"), 5);
    assert_eq!(
        seen,
        [
            t("2026-04-04T14:45:00Z"),
            t("2026-04-04T15:00:00Z"),
            t("2026-04-04T15:15:00Z"),
            t("2026-04-04T15:30:00Z"),
            t("2026-04-04T15:45:00Z"),
        ]
    );
}

/// Zones whose clocks change at local midnight: every day has its fire, the day of the change
/// included (the crate alone drops it).
#[test]
fn a_daily_rule_fires_every_day_in_zones_changing_at_midnight() {
    for zone in [
        "America/Havana",
        "America/Santiago",
        "Asia/Beirut",
        "America/Asuncion",
    ] {
        let spec = rule("FREQ=DAILY", zone, "2020-01-01T00:00:00");
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let first = tz
            .from_local_datetime(
                &NaiveDate::from_ymd_opt(2026, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
            )
            .earliest()
            .unwrap()
            .to_utc();
        let seen = fires(&spec, first - Duration::seconds(1), 365);
        let days: std::collections::BTreeSet<NaiveDate> = seen
            .iter()
            .map(|at| at.with_timezone(&tz).date_naive())
            .collect();
        assert_eq!(days.len(), 365, "{zone}: one fire on each day of 2026");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{zone}");
    }
}

#[test]
fn rdate_adds_fires_and_exdate_removes_them() {
    let spec = compile(serde_json::json!({
        "rule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
        "timezone": "UTC",
        "dtstart": "2026-11-30T09:00:00",
        "rdate": ["2026-12-03T12:00:00", "2026-12-24T09:00:00"],
        "exdate": ["2026-12-07T09:00:00", "2026-12-24T09:00:00"],
    }))
    .unwrap();
    assert_eq!(
        fires(&spec, t("2026-11-01T00:00:00Z"), 4),
        [
            t("2026-11-30T09:00:00Z"),
            t("2026-12-03T12:00:00Z"),
            t("2026-12-14T09:00:00Z"),
            t("2026-12-21T09:00:00Z"),
        ]
    );
}

#[test]
fn count_and_until_end_the_rule_but_not_its_rdates() {
    let spec = compile(serde_json::json!({
        "rule": "FREQ=DAILY;COUNT=3",
        "timezone": "Europe/Berlin",
        "dtstart": "2026-06-01T08:00:00",
        "rdate": ["2027-01-01T08:00:00"],
    }))
    .unwrap();
    assert_eq!(
        fires(&spec, t("2026-01-01T00:00:00Z"), 10),
        [
            t("2026-06-01T06:00:00Z"),
            t("2026-06-02T06:00:00Z"),
            t("2026-06-03T06:00:00Z"),
            t("2027-01-01T07:00:00Z"),
        ]
    );
    // UNTIL as an instant, as a local time and as a local date (through its end).
    for until in ["20260603T060000Z", "20260603T080000", "20260603"] {
        let spec = rule(
            &format!("FREQ=DAILY;UNTIL={until}"),
            "Europe/Berlin",
            "2026-06-01T08:00:00",
        );
        assert_eq!(
            fires(&spec, t("2026-01-01T00:00:00Z"), 10).len(),
            3,
            "{until}"
        );
    }
}

#[test]
fn a_rule_with_count_is_walked_once_per_process() {
    let spec = || {
        rule(
            "FREQ=WEEKLY;BYDAY=TU,TH;COUNT=7",
            "Europe/Berlin",
            "2031-03-04T08:30:00",
        )
    };
    let (CompiledSpec::Rrule(one), CompiledSpec::Rrule(two)) = (spec(), spec()) else {
        panic!("an rrule compiles to an rrule");
    };
    let (one, two) = (one.counted.clone().unwrap(), two.counted.clone().unwrap());
    assert!(
        Arc::ptr_eq(&one, &two),
        "the second compile finds the first's walk"
    );
    assert_eq!(one.len(), 7);
    let fires = fires(&spec(), t("2031-03-01T00:00:00Z"), 10);
    assert_eq!(fires.len(), 7);
    // Tuesdays and Thursdays from Tuesday 4 March: the 4th, 6th, 11th, 13th, 18th, 20th, 25th.
    assert_eq!(fires[6], t("2031-03-25T07:30:00Z"));
}

#[test]
fn bad_rules_are_refused_naming_the_part() {
    let refused = |spec: serde_json::Value| compile(spec).unwrap_err();
    let with_rule = |rule: &str| {
        refused(
            serde_json::json!({"rule": rule, "timezone": "UTC", "dtstart": "2026-01-01T00:00:00"}),
        )
    };
    let cases = [
        ("FREQ=MONTHLY;BYDAY=-6FR", "BYDAY -6FR is out of range"),
        ("FREQ=YEARLY;BYDAY=54MO", "BYDAY 54MO is out of range"),
        ("FREQ=MONTHLY;BYDAY=-5FR", "BYDAY=FR;BYSETPOS=-5"),
        (
            "FREQ=WEEKLY;BYDAY=1MO",
            "numbered weekdays are for MONTHLY and YEARLY",
        ),
        (
            "FREQ=DAILY;COUNT=0",
            "COUNT must be a whole number from 1 to 1000",
        ),
        (
            "FREQ=DAILY;COUNT=1001",
            "COUNT must be a whole number from 1 to 1000",
        ),
        (
            "FREQ=DAILY;INTERVAL=0",
            "INTERVAL must be a whole number from 1",
        ),
        (
            "FREQ=DAILY;COUNT=2;UNTIL=20270101",
            "COUNT and UNTIL cannot both be given",
        ),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY 0 is not a day"),
        (
            "FREQ=WEEKLY;BYMONTHDAY=3",
            "BYMONTHDAY cannot be used in a WEEKLY rule",
        ),
        (
            "FREQ=MONTHLY;BYWEEKNO=3",
            "BYWEEKNO can only be used in a YEARLY rule",
        ),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "never fires"),
        ("FREQ=DAILY;UNTIL=20250101", "never fires"),
        ("FREQ=FORTNIGHTLY", "FORTNIGHTLY"),
        ("BYDAY=MO", "FREQ is required"),
        ("FREQ=DAILY;BYHOUR=25", "BYHOUR"),
        ("FREQ=DAILY;FOO=1", "unknown part FOO"),
        ("FREQ=WEEKLY;BYDAY=öx", "BYDAY öx is not a weekday"),
        ("FREQ=WEEKLY;BYDAY=x", "BYDAY x is not a weekday"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;UNTIL=2027-01-01", "UNTIL must be YYYYMMDD"),
        (
            "FREQ=DAILY\nRDATE:20260101T000000",
            "give RDATE and EXDATE as the rdate and exdate lists",
        ),
    ];
    for (text, message) in cases {
        let (field, said) = with_rule(text);
        assert_eq!(field, "schedule.rule", "{text}");
        assert!(said.contains(message), "{text}: {said}");
    }
    let long = format!("FREQ=DAILY;BYMINUTE={}", vec!["1"; 600].join(","));
    assert!(with_rule(&long).1.contains("longer than 1000"));
    let member = |spec: serde_json::Value| refused(spec).0;
    assert_eq!(
        member(
            serde_json::json!({"rule": "FREQ=DAILY", "timezone": "EST", "dtstart": "2026-01-01T00:00:00"})
        ),
        "schedule.timezone"
    );
    for dtstart in [
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.5",
        "1969-12-31T00:00:00",
    ] {
        assert_eq!(
            member(serde_json::json!({"rule": "FREQ=DAILY", "dtstart": dtstart})),
            "schedule.dtstart",
            "{dtstart}"
        );
    }
    assert_eq!(
        member(serde_json::json!({"rule": "FREQ=DAILY"})),
        "schedule.dtstart"
    );
    assert_eq!(
        member(
            serde_json::json!({"rule": "FREQ=DAILY", "dtstart": "2026-01-01T00:00:00", "rdate": ["2026-01-02T00:00:00", "soon"]})
        ),
        "schedule.rdate[1]"
    );
    assert_eq!(
        member(
            serde_json::json!({"rule": "FREQ=DAILY", "dtstart": "2026-01-01T00:00:00", "exdate": vec!["2026-01-02T00:00:00"; 1001]})
        ),
        "schedule.exdate"
    );
}

#[test]
fn a_rule_that_names_a_time_of_day_is_fixed_time() {
    // Fixed-time (DAILY or coarser) shifts a gap time; sub-daily skips it.
    let daily = rule(
        "FREQ=WEEKLY;BYDAY=SU",
        "Europe/Berlin",
        "2026-01-04T02:30:00",
    );
    assert_eq!(
        daily.next_after(t("2026-03-28T12:00:00Z")),
        Some(t("2026-03-29T01:00:00Z"))
    );
    let minutely = rule(
        "FREQ=MINUTELY;INTERVAL=30;BYHOUR=2",
        "Europe/Berlin",
        "2026-01-01T00:00:00",
    );
    assert_eq!(
        minutely.next_after(t("2026-03-28T12:00:00Z")),
        Some(t("2026-03-30T00:00:00Z"))
    );
}

#[test]
fn a_query_decades_after_dtstart_keeps_the_phase_of_interval() {
    // Every five minutes since 1970 at :02: the answer for 2026 is on the same phase.
    let spec = rule("FREQ=MINUTELY;INTERVAL=5", "UTC", "1970-01-01T00:02:00");
    assert_eq!(
        spec.next_after(t("2026-12-02T10:00:00Z")),
        Some(t("2026-12-02T10:02:00Z"))
    );
    assert_eq!(
        spec.next_after(t("2026-12-02T10:02:00Z")),
        Some(t("2026-12-02T10:07:00Z"))
    );
}
