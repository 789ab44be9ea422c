//! Table tests for crontab schedules: exact UTC fire instants around every kind of DST change.

use chrono::{DateTime, Utc};

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&Utc)
}

fn schedule(
    expression: &str,
    tz: &str,
    gap: Option<DstGap>,
    overlap: Option<DstOverlap>,
) -> CronSchedule {
    CronSchedule::new(expression, tz, None, gap, overlap)
        .unwrap_or_else(|e| panic!("{expression} in {tz}: {e}"))
}

/// The next `n` fires after `after`, as RFC 3339 UTC strings.
fn fires(s: &CronSchedule, after: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut cursor = at(after);
    for _ in 0..n {
        let Some(next) = s.next_after(cursor) else {
            break;
        };
        out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        cursor = next;
    }
    out
}

use DstGap::{Shift, Skip};
use DstOverlap::{Both, First};

struct Case {
    name: &'static str,
    expression: &'static str,
    tz: &'static str,
    gap: Option<DstGap>,
    overlap: Option<DstOverlap>,
    after: &'static str,
    expected: &'static [&'static str],
}

const CASES: &[Case] = &[
    // ---- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z) ----
    Case {
        name: "NY gap, fixed-time default shifts to the transition",
        expression: "30 2 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-07T00:00:00Z",
        expected: &[
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z",
        ],
    },
    Case {
        name: "NY gap, fixed-time with explicit skip",
        expression: "30 2 * * *",
        tz: "America/New_York",
        gap: Some(Skip),
        overlap: None,
        after: "2026-03-07T00:00:00Z",
        expected: &["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"],
    },
    Case {
        name: "NY gap, all gap times of a fixed-time job collapse into one fire",
        expression: "0,30 2 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-08T00:00:00Z",
        expected: &[
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T06:30:00Z",
        ],
    },
    Case {
        name: "NY gap, shifted fire and a real 03:00 match are one fire",
        expression: "0 2,3 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-08T00:00:00Z",
        expected: &[
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T07:00:00Z",
        ],
    },
    Case {
        name: "NY gap, wildcard default skips the missing times",
        expression: "*/30 * * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-08T06:00:00Z",
        expected: &[
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z",
        ],
    },
    Case {
        name: "NY gap, wildcard-minute job skips by default",
        expression: "*/30 2 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-08T00:00:00Z",
        expected: &["2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"],
    },
    Case {
        name: "NY gap, wildcard-minute job with explicit shift fires once",
        expression: "*/30 2 * * *",
        tz: "America/New_York",
        gap: Some(Shift),
        overlap: None,
        after: "2026-03-08T00:00:00Z",
        expected: &[
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T06:30:00Z",
        ],
    },
    Case {
        name: "NY gap, @hourly is not fixed-time: 02:00 does not exist and is skipped",
        expression: "@hourly",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-03-08T05:30:00Z",
        expected: &[
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z",
        ],
    },
    // ---- America/New_York: 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z) ----
    Case {
        name: "NY overlap, fixed-time default fires at the first occurrence only",
        expression: "30 1 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-10-31T00:00:00Z",
        expected: &[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
        ],
    },
    Case {
        name: "NY overlap, fixed-time with explicit both fires twice",
        expression: "30 1 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: Some(Both),
        after: "2026-10-31T00:00:00Z",
        expected: &[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-02T06:30:00Z",
        ],
    },
    Case {
        name: "NY overlap, wildcard default follows the real clock",
        expression: "*/30 * * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-11-01T04:40:00Z",
        expected: &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    },
    Case {
        name: "NY overlap, wildcard with explicit first",
        expression: "*/30 * * * *",
        tz: "America/New_York",
        gap: None,
        overlap: Some(First),
        after: "2026-11-01T04:40:00Z",
        expected: &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T07:00:00Z",
            "2026-11-01T07:30:00Z",
        ],
    },
    Case {
        name: "NY overlap, after in the first pass: an earlier local time repeats ahead",
        expression: "*/30 * * * *",
        tz: "America/New_York",
        gap: None,
        overlap: None,
        after: "2026-11-01T05:40:00Z",
        expected: &[
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:00:00Z",
        ],
    },
    Case {
        name: "NY overlap, after in the first pass, both: second occurrence of 01:00",
        expression: "0 1 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: Some(Both),
        after: "2026-11-01T05:10:00Z",
        expected: &["2026-11-01T06:00:00Z", "2026-11-02T06:00:00Z"],
    },
    Case {
        name: "NY overlap, after in the first pass, both: the first pass comes first",
        expression: "45 1 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: Some(Both),
        after: "2026-11-01T05:10:00Z",
        expected: &[
            "2026-11-01T05:45:00Z",
            "2026-11-01T06:45:00Z",
            "2026-11-02T06:45:00Z",
        ],
    },
    Case {
        name: "NY overlap, after in the second pass, first: nothing repeats",
        expression: "*/20 1 * * *",
        tz: "America/New_York",
        gap: None,
        overlap: Some(First),
        after: "2026-11-01T06:10:00Z",
        expected: &["2026-11-02T06:00:00Z"],
    },
    // ---- Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z) ----
    Case {
        name: "Berlin gap, fixed-time default shifts",
        expression: "30 2 * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: None,
        after: "2026-03-28T00:00:00Z",
        expected: &[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ],
    },
    Case {
        name: "Berlin gap, fixed-time explicit skip",
        expression: "30 2 * * *",
        tz: "Europe/Berlin",
        gap: Some(Skip),
        overlap: None,
        after: "2026-03-28T00:00:00Z",
        expected: &["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"],
    },
    Case {
        name: "Berlin gap, wildcard default skips",
        expression: "*/30 * * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: None,
        after: "2026-03-29T00:10:00Z",
        expected: &[
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z",
        ],
    },
    Case {
        name: "Berlin gap, wildcard-minute job with explicit shift",
        expression: "*/15 2 * * *",
        tz: "Europe/Berlin",
        gap: Some(Shift),
        overlap: None,
        after: "2026-03-29T00:00:00Z",
        expected: &["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"],
    },
    // ---- Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z) ----
    Case {
        name: "Berlin overlap, fixed-time default first",
        expression: "30 2 * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: None,
        after: "2026-10-24T00:00:00Z",
        expected: &[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ],
    },
    Case {
        name: "Berlin overlap, fixed-time explicit both",
        expression: "30 2 * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: Some(Both),
        after: "2026-10-24T00:00:00Z",
        expected: &[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-26T01:30:00Z",
        ],
    },
    Case {
        name: "Berlin overlap, wildcard default both",
        expression: "*/30 * * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: None,
        after: "2026-10-24T23:50:00Z",
        expected: &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:00:00Z",
        ],
    },
    Case {
        name: "Berlin overlap, wildcard explicit first",
        expression: "*/30 * * * *",
        tz: "Europe/Berlin",
        gap: None,
        overlap: Some(First),
        after: "2026-10-24T23:50:00Z",
        expected: &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T02:00:00Z",
        ],
    },
    // ---- Australia/Lord_Howe: 30-minute shifts, southern hemisphere ----
    // 2026-10-04 02:00 +10:30 -> 02:30 +11:00 (2026-10-03T15:30Z)
    Case {
        name: "Lord Howe gap, fixed-time default shifts",
        expression: "15 2 * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: None,
        after: "2026-10-02T00:00:00Z",
        expected: &[
            "2026-10-02T15:45:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-04T15:15:00Z",
        ],
    },
    Case {
        name: "Lord Howe gap, fixed-time explicit skip",
        expression: "15 2 * * *",
        tz: "Australia/Lord_Howe",
        gap: Some(Skip),
        overlap: None,
        after: "2026-10-02T00:00:00Z",
        expected: &["2026-10-02T15:45:00Z", "2026-10-04T15:15:00Z"],
    },
    Case {
        name: "Lord Howe gap, wildcard default skips half an hour",
        expression: "*/15 * * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: None,
        after: "2026-10-03T15:10:00Z",
        expected: &[
            "2026-10-03T15:15:00Z",
            "2026-10-03T15:30:00Z",
            "2026-10-03T15:45:00Z",
        ],
    },
    Case {
        name: "Lord Howe gap, wildcard with explicit shift",
        expression: "*/15 2 * * *",
        tz: "Australia/Lord_Howe",
        gap: Some(Shift),
        overlap: None,
        after: "2026-10-03T15:10:00Z",
        expected: &[
            "2026-10-03T15:30:00Z",
            "2026-10-03T15:45:00Z",
            "2026-10-04T15:00:00Z",
        ],
    },
    // 2026-04-05 02:00 +11:00 -> 01:30 +10:30 (2026-04-04T15:00Z)
    Case {
        name: "Lord Howe overlap, fixed-time default first",
        expression: "45 1 * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: None,
        after: "2026-04-03T00:00:00Z",
        expected: &[
            "2026-04-03T14:45:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-05T15:15:00Z",
        ],
    },
    Case {
        name: "Lord Howe overlap, fixed-time explicit both",
        expression: "45 1 * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: Some(Both),
        after: "2026-04-03T00:00:00Z",
        expected: &[
            "2026-04-03T14:45:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-04T15:15:00Z",
            "2026-04-05T15:15:00Z",
        ],
    },
    Case {
        name: "Lord Howe overlap, wildcard default both",
        expression: "*/15 * * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: None,
        after: "2026-04-04T14:20:00Z",
        expected: &[
            "2026-04-04T14:30:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-04T15:00:00Z",
            "2026-04-04T15:15:00Z",
            "2026-04-04T15:30:00Z",
        ],
    },
    Case {
        name: "Lord Howe overlap, wildcard explicit first",
        expression: "*/15 * * * *",
        tz: "Australia/Lord_Howe",
        gap: None,
        overlap: Some(First),
        after: "2026-04-04T14:20:00Z",
        expected: &[
            "2026-04-04T14:30:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-04T15:30:00Z",
        ],
    },
    // ---- Pacific/Chatham: +12:45/+13:45, changes at 02:45 local standard time ----
    // 2026-09-27 02:45 +12:45 -> 03:45 +13:45 (2026-09-26T14:00Z)
    Case {
        name: "Chatham gap, fixed-time default shifts",
        expression: "0 3 * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: None,
        after: "2026-09-25T00:00:00Z",
        expected: &[
            "2026-09-25T14:15:00Z",
            "2026-09-26T14:00:00Z",
            "2026-09-27T13:15:00Z",
        ],
    },
    Case {
        name: "Chatham gap, fixed-time explicit skip",
        expression: "0 3 * * *",
        tz: "Pacific/Chatham",
        gap: Some(Skip),
        overlap: None,
        after: "2026-09-25T00:00:00Z",
        expected: &["2026-09-25T14:15:00Z", "2026-09-27T13:15:00Z"],
    },
    Case {
        name: "Chatham gap, wildcard default skips the missing hour",
        expression: "*/30 * * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: None,
        after: "2026-09-26T13:20:00Z",
        expected: &[
            "2026-09-26T13:45:00Z",
            "2026-09-26T14:15:00Z",
            "2026-09-26T14:45:00Z",
        ],
    },
    Case {
        name: "Chatham gap, wildcard explicit shift",
        expression: "*/30 * * * *",
        tz: "Pacific/Chatham",
        gap: Some(Shift),
        overlap: None,
        after: "2026-09-26T13:20:00Z",
        expected: &[
            "2026-09-26T13:45:00Z",
            "2026-09-26T14:00:00Z",
            "2026-09-26T14:15:00Z",
            "2026-09-26T14:45:00Z",
        ],
    },
    // 2026-04-05 03:45 +13:45 -> 02:45 +12:45 (2026-04-04T14:00Z)
    Case {
        name: "Chatham overlap, fixed-time default first",
        expression: "0 3 * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: None,
        after: "2026-04-03T00:00:00Z",
        expected: &[
            "2026-04-03T13:15:00Z",
            "2026-04-04T13:15:00Z",
            "2026-04-05T14:15:00Z",
        ],
    },
    Case {
        name: "Chatham overlap, fixed-time explicit both",
        expression: "0 3 * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: Some(Both),
        after: "2026-04-03T00:00:00Z",
        expected: &[
            "2026-04-03T13:15:00Z",
            "2026-04-04T13:15:00Z",
            "2026-04-04T14:15:00Z",
            "2026-04-05T14:15:00Z",
        ],
    },
    Case {
        name: "Chatham overlap, wildcard default both",
        expression: "0 * * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: None,
        after: "2026-04-04T12:00:00Z",
        expected: &[
            "2026-04-04T12:15:00Z",
            "2026-04-04T13:15:00Z",
            "2026-04-04T14:15:00Z",
            "2026-04-04T15:15:00Z",
        ],
    },
    Case {
        name: "Chatham overlap, wildcard explicit first",
        expression: "0 * * * *",
        tz: "Pacific/Chatham",
        gap: None,
        overlap: Some(First),
        after: "2026-04-04T12:00:00Z",
        expected: &[
            "2026-04-04T12:15:00Z",
            "2026-04-04T13:15:00Z",
            "2026-04-04T15:15:00Z",
        ],
    },
];

#[test]
fn dst_table() {
    let mut failures = Vec::new();
    for case in CASES {
        let s = schedule(case.expression, case.tz, case.gap, case.overlap);
        let got = fires(&s, case.after, case.expected.len());
        if got != case.expected {
            failures.push(format!(
                "{}: `{}` in {}\n  expected {:?}\n  got      {:?}",
                case.name, case.expression, case.tz, case.expected, got
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn defaults_follow_vixie_and_explicit_policies_win() {
    let cases = [
        ("30 2 * * *", None, None, Shift, First),
        ("@daily", None, None, Shift, First),
        ("@hourly", None, None, Skip, Both),
        ("*/5 * * * *", None, None, Skip, Both),
        ("0 * * * *", None, None, Skip, Both),
        ("30 2 * * *", Some(Skip), Some(Both), Skip, Both),
        ("*/5 * * * *", Some(Shift), Some(First), Shift, First),
        ("*/5 * * * *", Some(Shift), None, Shift, Both),
    ];
    for (expression, gap, overlap, want_gap, want_overlap) in cases {
        let s = schedule(expression, "UTC", gap, overlap);
        assert_eq!(s.dst_gap(), want_gap, "{expression}");
        assert_eq!(s.dst_overlap(), want_overlap, "{expression}");
        assert_eq!(s.day_match(), DayMatch::Or, "{expression}");
    }
    let and = CronSchedule::new("0 0 * * *", "UTC", Some(DayMatch::And), None, None).unwrap();
    assert_eq!(and.day_match(), DayMatch::And);
}

#[test]
fn day_match_or_and_and() {
    let or = schedule("0 0 13 * FRI", "UTC", None, None);
    assert_eq!(
        fires(&or, "2026-02-01T00:00:00Z", 4),
        [
            "2026-02-06T00:00:00Z",
            "2026-02-13T00:00:00Z",
            "2026-02-20T00:00:00Z",
            "2026-02-27T00:00:00Z",
        ]
    );
    let and = CronSchedule::new("0 0 13 * FRI", "UTC", Some(DayMatch::And), None, None).unwrap();
    assert_eq!(
        fires(&and, "2026-01-01T00:00:00Z", 3),
        [
            "2026-02-13T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-11-13T00:00:00Z",
        ]
    );
    // Only one day field restricted: both must match whatever day_match says (`*/2` is not
    // restricted, so it ANDs with Friday).
    let star_step = schedule("0 0 */2 * FRI", "UTC", None, None);
    assert_eq!(
        fires(&star_step, "2026-02-01T00:00:00Z", 3),
        [
            "2026-02-13T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-03-13T00:00:00Z",
        ]
    );
    // Day of week alone.
    let weekdays = schedule("0 9 * * MON-FRI", "Europe/Berlin", None, None);
    assert_eq!(
        fires(&weekdays, "2026-03-06T09:00:00Z", 3),
        [
            "2026-03-09T08:00:00Z",
            "2026-03-10T08:00:00Z",
            "2026-03-11T08:00:00Z",
        ]
    );
}

#[test]
fn february_29_fires_in_leap_years() {
    let s = schedule("0 0 29 2 *", "UTC", None, None);
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2028-02-29T00:00:00Z",
            "2032-02-29T00:00:00Z",
            "2036-02-29T00:00:00Z",
        ]
    );
    // 2100 is not a leap year.
    assert_eq!(
        fires(&s, "2096-03-01T00:00:00Z", 1),
        ["2104-02-29T00:00:00Z"]
    );
}

#[test]
fn february_29_on_a_monday_in_and_mode_is_found_across_the_2100_gap() {
    let s = CronSchedule::new("0 0 29 2 MON", "UTC", Some(DayMatch::And), None, None).unwrap();
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 3),
        [
            "2044-02-29T00:00:00Z",
            "2072-02-29T00:00:00Z",
            "2112-02-29T00:00:00Z",
        ]
    );
}

#[test]
fn refuses_expressions_that_never_fire() {
    let cases = [
        (
            "0 0 30 2 *",
            None,
            "the expression never fires: day-of-month 30 does not occur in February",
        ),
        (
            "0 0 31 4,6,9,11 *",
            None,
            "the expression never fires: day-of-month 31 does not occur in April, June, September or November",
        ),
        (
            "0 0 30,31 FEB *",
            None,
            "the expression never fires: days-of-month 30,31 do not occur in February",
        ),
        (
            "0 0 30 2 MON",
            Some(DayMatch::And),
            "the expression never fires: day-of-month 30 does not occur in February",
        ),
        (
            "0 0 30 2 */2",
            None,
            "the expression never fires: day-of-month 30 does not occur in February",
        ),
    ];
    for (expression, day_match, message) in cases {
        let err = CronSchedule::new(expression, "UTC", day_match, None, None).unwrap_err();
        assert_eq!(err.field, CronField::Expression);
        assert_eq!(err.message, message, "{expression}");
    }
    // Vixie OR: both day fields restricted, so every Monday of February matches.
    let or = schedule("0 0 30 2 MON", "UTC", None, None);
    assert_eq!(
        fires(&or, "2026-01-01T00:00:00Z", 1),
        ["2026-02-02T00:00:00Z"]
    );
    for ok in ["0 0 29 2 *", "0 0 31 1-12 *", "0 0 */30 2 *", "0 0 31 * *"] {
        assert!(
            CronSchedule::new(ok, "UTC", None, None, None).is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn errors_name_their_field() {
    let e = CronSchedule::new("0 0 * * *", "EST", None, None, None).unwrap_err();
    assert_eq!(e.field, CronField::Timezone);
    assert!(e.to_string().starts_with("\"EST\" is an abbreviation"));
    let e = CronSchedule::new("0 0 * *", "UTC", None, None, None).unwrap_err();
    assert_eq!(e.field, CronField::Expression);
}

#[test]
fn next_after_is_strict_and_handles_sub_seconds() {
    let s = schedule("*/5 * * * *", "UTC", None, None);
    assert_eq!(
        s.next_after(at("2026-05-01T10:05:00Z")),
        Some(at("2026-05-01T10:10:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-05-01T10:04:59.999Z")),
        Some(at("2026-05-01T10:05:00Z"))
    );
    assert_eq!(
        s.next_after(at("2026-05-01T10:05:00.001Z")),
        Some(at("2026-05-01T10:10:00Z"))
    );
}

#[test]
fn rolls_over_months_and_years() {
    let s = schedule("59 23 31 12 *", "UTC", None, None);
    assert_eq!(
        fires(&s, "2026-12-31T23:59:00Z", 1),
        ["2027-12-31T23:59:00Z"]
    );
    let s = schedule("0 0 31 * *", "UTC", None, None);
    assert_eq!(
        fires(&s, "2026-01-31T00:00:00Z", 3),
        [
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z",
        ]
    );
    let s = schedule("@yearly", "Pacific/Chatham", None, None);
    assert_eq!(
        fires(&s, "2026-06-01T00:00:00Z", 2),
        ["2026-12-31T10:15:00Z", "2027-12-31T10:15:00Z"]
    );
}

#[test]
fn skip_only_gap_times_is_bounded() {
    // The only matches are 02:xx on the second Sunday of March, which never exists in New York
    // while the current US rules last: with `skip` nothing fires within the 50-year bound, and
    // the search must end with None instead of looping.
    let s = CronSchedule::new(
        "*/10 2 8-14 3 SUN",
        "America/New_York",
        Some(DayMatch::And),
        Some(Skip),
        None,
    )
    .unwrap();
    let next = s.next_after(at("2026-01-01T00:00:00Z"));
    assert_eq!(next, None);
}

#[test]
fn far_future_and_edge_instants_do_not_panic() {
    let s = schedule("* * * * *", "Europe/Berlin", None, None);
    assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
    assert!(s.next_after(DateTime::<Utc>::MIN_UTC).is_some());
}

#[test]
fn matches_local_applies_the_day_rule() {
    let s = schedule("30 2 13 * FRI", "UTC", None, None);
    let local = |text: &str| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    assert!(s.matches_local(local("2026-02-13 02:30")));
    assert!(s.matches_local(local("2026-02-06 02:30")));
    assert!(!s.matches_local(local("2026-02-07 02:30")));
    assert!(!s.matches_local(local("2026-02-13 02:31")));
}

#[test]
fn policy_names_are_snake_case() {
    let json = |v: serde_json::Value| v.as_str().unwrap().to_string();
    assert_eq!(json(serde_json::to_value(DayMatch::Or).unwrap()), "or");
    assert_eq!(json(serde_json::to_value(DayMatch::And).unwrap()), "and");
    assert_eq!(json(serde_json::to_value(DstGap::Shift).unwrap()), "shift");
    assert_eq!(json(serde_json::to_value(DstGap::Skip).unwrap()), "skip");
    assert_eq!(
        json(serde_json::to_value(DstOverlap::First).unwrap()),
        "first"
    );
    assert_eq!(
        json(serde_json::to_value(DstOverlap::Both).unwrap()),
        "both"
    );
    let parsed: DstOverlap = serde_json::from_str("\"both\"").unwrap();
    assert_eq!(parsed, DstOverlap::Both);
    assert!(serde_json::from_str::<DstGap>("\"Shift\"").is_err());
}
