use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::schedule::{ScheduleSpec, Timing};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn holidays() -> CalendarDefinition {
    CalendarDefinition {
        timezone: "Europe/Berlin".into(),
        dates: vec![d("2026-10-03")],
        ranges: vec![
            DateRange {
                from: d("2026-12-24"),
                to: d("2026-12-26"),
            },
            DateRange {
                from: d("2026-12-27"),
                to: d("2026-12-31"),
            },
        ],
        rules: vec!["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1".into()],
        imported_dates: vec![d("2026-04-06")],
        ..Default::default()
    }
}

fn exclusions(definition: &CalendarDefinition) -> Exclusions {
    Exclusions::new(vec![Arc::new(Calendar::compile(definition, "").unwrap())])
}

fn weekdays_at_nine(exclude: Exclusions) -> Timing {
    let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "kind": "crontab", "expression": "0 9 * * *", "timezone": "Europe/Berlin"
    }))
    .unwrap();
    Timing {
        exclude,
        ..Timing::of(spec.compile("schedule").unwrap())
    }
}

#[test]
fn dates_ranges_rules_and_imported_dates_are_excluded() {
    let calendar = Calendar::compile(&holidays(), "").unwrap();
    assert_eq!(
        calendar.excluded_through(d("2026-10-03")),
        Some(d("2026-10-03"))
    );
    assert_eq!(calendar.excluded_through(d("2026-10-04")), None);
    // Adjacent ranges are one run: from the 25th, excluded through the 31st.
    assert_eq!(
        calendar.excluded_through(d("2026-12-25")),
        Some(d("2026-12-31"))
    );
    assert_eq!(calendar.excluded_through(d("2027-01-01")), None);
    assert_eq!(
        calendar.excluded_through(d("2031-05-01")),
        Some(d("2031-05-01"))
    );
    assert_eq!(calendar.excluded_through(d("2031-05-02")), None);
    assert_eq!(
        calendar.excluded_through(d("2026-04-06")),
        Some(d("2026-04-06"))
    );
}

#[test]
fn a_schedule_steps_over_excluded_dates() {
    let timing = weekdays_at_nine(exclusions(&holidays()));
    assert_eq!(
        timing.preview(t("2026-12-22T12:00:00Z"), 3),
        [
            t("2026-12-23T08:00:00Z"),
            t("2027-01-01T08:00:00Z"),
            t("2027-01-02T08:00:00Z"),
        ]
    );
    // May Day by rule, in any year.
    assert_eq!(
        timing.next_fire(t("2030-04-30T12:00:00Z"), 0),
        Some(t("2030-05-02T07:00:00Z"))
    );
    // The skipped fires, as consecutive runs.
    let skips = timing.calendar_skips(t("2026-12-23T12:00:00Z"), t("2027-01-01T08:00:00Z"));
    assert_eq!(skips.len(), 1);
    assert_eq!(
        (skips[0].first, skips[0].last, skips[0].fires),
        (t("2026-12-24T08:00:00Z"), t("2026-12-31T08:00:00Z"), 8)
    );
}

#[test]
fn the_calendars_zone_decides_the_date() {
    // An hourly UTC schedule, a Berlin calendar excluding Christmas Day: 23:00 UTC on the 24th
    // is already the 25th in Berlin.
    let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "kind": "interval", "every_seconds": 3600
    }))
    .unwrap();
    let christmas = CalendarDefinition {
        timezone: "Europe/Berlin".into(),
        dates: vec![d("2026-12-25")],
        ..Default::default()
    };
    let timing = Timing {
        exclude: exclusions(&christmas),
        ..Timing::of(spec.compile("schedule").unwrap())
    };
    assert_eq!(
        timing.preview(t("2026-12-24T21:30:00Z"), 2),
        [t("2026-12-24T22:00:00Z"), t("2026-12-25T23:00:00Z")]
    );
    assert_eq!(
        timing.calendar_skips(t("2026-12-24T22:00:01Z"), t("2026-12-25T23:00:00Z"))[0].fires,
        24
    );
}

#[test]
fn a_calendar_excluding_everything_ends_the_schedule_after_a_bounded_search() {
    let everything = CalendarDefinition {
        timezone: "UTC".into(),
        ranges: vec![DateRange {
            from: d("1970-01-01"),
            to: d("9999-12-31"),
        }],
        ..Default::default()
    };
    assert_eq!(
        weekdays_at_nine(exclusions(&everything)).next_fire(t("2026-01-01T00:00:00Z"), 0),
        None
    );
    // Every day by rule: a step per day, bounded.
    let daily = CalendarDefinition {
        timezone: "UTC".into(),
        rules: vec!["FREQ=DAILY".into()],
        ..Default::default()
    };
    assert_eq!(
        weekdays_at_nine(exclusions(&daily)).next_fire(t("2026-01-01T00:00:00Z"), 0),
        None
    );
}

#[test]
fn bad_definitions_name_the_member() {
    let fields = |definition: CalendarDefinition| -> Vec<String> {
        Calendar::compile(&definition, "body")
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    let mut bad = holidays();
    bad.timezone = "CET".into();
    assert_eq!(fields(bad), ["body.timezone"]);
    let mut bad = holidays();
    bad.ranges[1] = DateRange {
        from: d("2026-12-31"),
        to: d("2026-12-01"),
    };
    assert_eq!(fields(bad), ["body.ranges[1].to"]);
    let mut bad = holidays();
    bad.rules.push("FREQ=MONTHLY;BYDAY=-6FR".into());
    assert_eq!(fields(bad), ["body.rules[1]"]);
    let mut bad = holidays();
    bad.dates = vec![d("2026-01-01"); MAX_ENTRIES + 1];
    assert_eq!(fields(bad), ["body.dates"]);
}

#[test]
fn ics_all_day_events_become_dates() {
    let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
        BEGIN:VEVENT\r\nUID:1\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\n\
        SUMMARY:Weihnachten\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:2\r\nDTSTART;VALUE=DATE:20260501\r\nRRULE:FREQ=YEARLY;COUNT=3\r\n\
        SUMMARY:Tag der\r\n  Arbeit\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:3\r\nDTSTART;TZID=Europe/Berlin:20261224T140000\r\n\
        SUMMARY:Party\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:4\r\nDTSTART;VALUE=DATE:\r\n 20261003\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let (dates, events, ignored) = import_ics(text).unwrap();
    assert_eq!(
        dates,
        [
            d("2026-05-01"),
            d("2026-10-03"),
            d("2026-12-25"),
            d("2026-12-26"),
            d("2027-05-01"),
            d("2028-05-01"),
        ]
    );
    assert_eq!((events, ignored), (4, 1));
    assert!(import_ics("hello").unwrap_err().contains("BEGIN:VCALENDAR"));
    let bad_date =
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:2026-12-25\nEND:VEVENT\nEND:VCALENDAR\n";
    assert!(import_ics(bad_date).unwrap_err().contains("2026-12-25"));
    let no_start = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n";
    assert!(import_ics(no_start).unwrap_err().contains("no DTSTART"));
}
