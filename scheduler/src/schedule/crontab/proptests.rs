//! Property tests: the search against a minute-by-minute oracle written from the contract's
//! definitions, structural invariants over long runs, and the `cron` crate as a differential
//! oracle for UTC expressions where its semantics agree with ours.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{DateTime, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One list item of a field, rendered the same way for our parser and for the `cron` crate.
#[derive(Debug, Clone)]
enum Item {
    Star,
    StarStep(u32),
    Value(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
}

/// Weekday values render as names: the `cron` crate numbers Sunday 1, we number it 0.
fn render(items: &[Item], weekday: bool) -> String {
    let v = |n: u32| {
        if weekday {
            WEEKDAYS[n as usize].to_string()
        } else {
            n.to_string()
        }
    };
    items
        .iter()
        .map(|item| match *item {
            Item::Star => "*".to_string(),
            Item::StarStep(s) => format!("*/{s}"),
            Item::Value(a) => v(a),
            Item::Range(a, b) => format!("{}-{}", v(a), v(b)),
            Item::RangeStep(a, b, s) => format!("{}-{}/{s}", v(a), v(b)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A field over `min..=max` whose steps stay within `max_step` (the `cron` crate's limit).
fn field(min: u32, max: u32, max_step: u32) -> impl Strategy<Value = Vec<Item>> {
    let item = prop_oneof![
        2 => Just(Item::Star),
        2 => (1..=max_step).prop_map(Item::StarStep),
        3 => (min..=max).prop_map(Item::Value),
        2 => (min..=max, min..=max).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        1 => (min..=max, min..=max, 1..=max_step)
            .prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
    ];
    prop::collection::vec(item, 1..=3)
}

/// Hours biased towards 00-04, where DST changes happen.
fn hour_field() -> impl Strategy<Value = Vec<Item>> {
    prop_oneof![
        2 => field(0, 23, 23),
        1 => prop::collection::vec((0u32..=4).prop_map(Item::Value), 1..=3),
        1 => (0u32..=3, 1u32..=4).prop_map(|(a, len)| vec![Item::Range(a, (a + len).min(23))]),
    ]
}

#[derive(Debug, Clone)]
struct Fields {
    minute: Vec<Item>,
    hour: Vec<Item>,
    dom: Vec<Item>,
    month: Vec<Item>,
    dow: Vec<Item>,
}

impl Fields {
    fn ours(&self) -> String {
        format!(
            "{} {} {} {} {}",
            render(&self.minute, false),
            render(&self.hour, false),
            render(&self.dom, false),
            render(&self.month, false),
            render(&self.dow, true)
        )
    }

    /// The 7-field form of the `cron` crate: seconds first, year last.
    fn cron_crate(&self) -> String {
        format!("0 {} *", self.ours())
    }
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        field(0, 59, 59),
        hour_field(),
        field(1, 31, 31),
        field(1, 12, 12),
        field(0, 6, 7),
    )
        .prop_map(|(minute, hour, dom, month, dow)| Fields {
            minute,
            hour,
            dom,
            month,
            dow,
        })
}

/// Mostly-dense expressions, so a two-day window around a DST change has fires in it.
fn dense_fields() -> impl Strategy<Value = Fields> {
    (field(0, 59, 59), hour_field()).prop_map(|(minute, hour)| Fields {
        minute,
        hour,
        dom: vec![Item::Star],
        month: vec![Item::Star],
        dow: vec![Item::Star],
    })
}

const ZONES: &[&str] = &[
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "UTC",
    "Asia/Kathmandu",
    "America/Santiago",
    "Europe/London",
];

fn offset_at(tz: Tz, utc: i64) -> i64 {
    let naive = DateTime::from_timestamp(utc, 0).unwrap().naive_utc();
    i64::from(tz.offset_from_utc_datetime(&naive).fix().local_minus_utc())
}

/// UTC instants of every offset change of the test zones in 2024-2031, found by scanning
/// days and bisecting to the second: the anchors that put `after` next to DST changes.
fn transitions(tz: Tz) -> &'static [i64] {
    static CACHE: OnceLock<Vec<(Tz, Vec<i64>)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        ZONES
            .iter()
            .map(|name| {
                let tz: Tz = name.parse().unwrap();
                let start = Utc
                    .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp();
                let end = Utc
                    .with_ymd_and_hms(2032, 1, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp();
                let mut found = Vec::new();
                let mut t = start;
                while t < end {
                    if offset_at(tz, t) != offset_at(tz, t + 86_400) {
                        let (mut lo, mut hi) = (t, t + 86_400);
                        while hi - lo > 1 {
                            let mid = (lo + hi) / 2;
                            if offset_at(tz, mid) == offset_at(tz, lo) {
                                lo = mid;
                            } else {
                                hi = mid;
                            }
                        }
                        found.push(hi);
                    }
                    t += 86_400;
                }
                (tz, found)
            })
            .collect()
    });
    &all.iter().find(|(z, _)| *z == tz).unwrap().1
}

fn matches_at_local(s: &CronSchedule, local: i64) -> bool {
    s.matches_local(DateTime::from_timestamp(local, 0).unwrap().naive_utc())
}

/// Every fire instant in `(from, to]`, straight from the contract's definitions, by visiting
/// each UTC minute (the test zones change offset on whole minutes).
fn oracle(s: &CronSchedule, from: i64, to: i64) -> Vec<i64> {
    let tz = s.timezone();
    let mut fires = BTreeSet::new();
    let mut u = from.div_euclid(60) * 60;
    while u <= to {
        let offset = offset_at(tz, u);
        let before = offset_at(tz, u - 1);
        if offset > before && s.dst_gap() == DstGap::Shift {
            // Spring forward at u: local [u + before, u + offset) does not exist.
            let mut local = (u + before).div_euclid(60) * 60;
            while local < u + offset {
                if local >= u + before && matches_at_local(s, local) {
                    fires.insert(u);
                }
                local += 60;
            }
        }
        let local = u + offset;
        if local % 60 == 0 && matches_at_local(s, local) {
            let naive = DateTime::from_timestamp(local, 0).unwrap().naive_utc();
            let second_occurrence = match tz.from_local_datetime(&naive) {
                LocalResult::Ambiguous(a, b) => u == a.timestamp().max(b.timestamp()),
                _ => false,
            };
            if !second_occurrence || s.dst_overlap() == DstOverlap::Both {
                fires.insert(u);
            }
        }
        u += 60;
    }
    fires.into_iter().filter(|&f| f > from && f <= to).collect()
}

fn engine(s: &CronSchedule, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor = DateTime::from_timestamp(from, 0).unwrap();
    while let Some(next) = s.next_after(cursor) {
        if next.timestamp() > to {
            break;
        }
        out.push(next.timestamp());
        cursor = next;
    }
    out
}

fn policies() -> impl Strategy<Value = (Option<DayMatch>, Option<DstGap>, Option<DstOverlap>)> {
    (
        prop::option::of(prop_oneof![Just(DayMatch::Or), Just(DayMatch::And)]),
        prop::option::of(prop_oneof![Just(DstGap::Shift), Just(DstGap::Skip)]),
        prop::option::of(prop_oneof![Just(DstOverlap::First), Just(DstOverlap::Both)]),
    )
}

/// An instant up to 40 hours before a DST change of `zone` (or anywhere in 2024-2031).
fn after_near_change(zone: &'static str) -> impl Strategy<Value = i64> {
    let tz: Tz = zone.parse().unwrap();
    let anchors = transitions(tz).to_vec();
    let plain = 1_704_067_200i64..1_956_528_000i64;
    if anchors.is_empty() {
        return plain.boxed();
    }
    prop_oneof![
        3 => (0..anchors.len(), 0i64..40 * 3600).prop_map(move |(i, back)| anchors[i] - back),
        1 => plain,
    ]
    .boxed()
}

fn zone_and_after() -> impl Strategy<Value = (&'static str, i64)> {
    prop::sample::select(ZONES).prop_flat_map(|zone| (Just(zone), after_near_change(zone)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Within a two-day window starting next to a DST change, the search yields exactly the
    /// fires the contract defines, in order.
    #[test]
    fn search_agrees_with_the_minute_by_minute_oracle(
        f in dense_fields(),
        (zone, after) in zone_and_after(),
        (day_match, gap, overlap) in policies(),
    ) {
        let s = CronSchedule::new(&f.ours(), zone, day_match, gap, overlap).unwrap();
        let to = after + 48 * 3600;
        prop_assert_eq!(engine(&s, after, to), oracle(&s, after, to), "{} in {}", f.ours(), zone);
    }

    /// Over long runs of any expression: strictly increasing, strictly after `after`, and each
    /// fire is a matching local time or a gap shift justified by a matching local time.
    #[test]
    fn fires_increase_and_match(
        f in fields(),
        (zone, after) in zone_and_after(),
        (day_match, gap, overlap) in policies(),
    ) {
        let Ok(s) = CronSchedule::new(&f.ours(), zone, day_match, gap, overlap) else {
            // Only "never fires" may be refused for a generated expression.
            let e = CronSchedule::new(&f.ours(), zone, day_match, gap, overlap).unwrap_err();
            prop_assert!(e.message.starts_with("the expression never fires"), "{}", e.message);
            return Ok(());
        };
        let tz = s.timezone();
        let mut previous = after;
        let mut cursor = DateTime::from_timestamp(after, 0).unwrap();
        for _ in 0..20 {
            let Some(next) = s.next_after(cursor) else { break };
            let t = next.timestamp();
            prop_assert!(t > previous, "{} in {}: {} not after {}", f.ours(), zone, t, previous);
            let local = t + offset_at(tz, t);
            if !(local % 60 == 0 && matches_at_local(&s, local)) {
                // Must be a spring-forward transition with a matching gap minute.
                let before = offset_at(tz, t - 1);
                let offset = offset_at(tz, t);
                prop_assert!(s.dst_gap() == DstGap::Shift && offset > before,
                    "{} in {}: {} is neither a match nor a shifted gap", f.ours(), zone, next);
                let gap_match = (0..(offset - before) / 60)
                    .any(|m| matches_at_local(&s, t + before + m * 60));
                prop_assert!(gap_match, "{} in {}: no gap minute matches at {}", f.ours(), zone, next);
            }
            previous = t;
            cursor = next;
        }
    }

    /// UTC expressions against the `cron` crate, where the two agree: its AND of the day
    /// fields equals ours unless both are restricted in `or` mode.
    #[test]
    fn agrees_with_the_cron_crate_in_utc(
        f in fields(),
        after in 946_684_800i64..2_208_988_800i64,
        and_mode in any::<bool>(),
    ) {
        let ours = f.ours();
        let parsed = CronExpr::parse(&ours).unwrap();
        let day_match = if and_mode { DayMatch::And } else { DayMatch::Or };
        prop_assume!(day_match == DayMatch::And || !(parsed.dom_restricted && parsed.dow_restricted));
        let Ok(s) = CronSchedule::new(&ours, "UTC", Some(day_match), None, None) else {
            return Ok(());
        };
        let reference = cron::Schedule::from_str(&f.cron_crate()).unwrap();
        let start = DateTime::from_timestamp(after, 0).unwrap();
        let theirs: Vec<_> = reference.after(&start).take(8).collect();
        let mut mine = Vec::new();
        let mut cursor = start;
        for _ in 0..theirs.len() {
            match s.next_after(cursor) {
                Some(next) => { mine.push(next); cursor = next; }
                None => break,
            }
        }
        prop_assert_eq!(mine, theirs, "`{}` vs `{}`", ours, f.cron_crate());
    }
}

#[test]
fn transitions_are_found_for_the_dst_zones() {
    for zone in [
        "America/New_York",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
    ] {
        // Two changes a year over eight years.
        assert_eq!(transitions(zone.parse().unwrap()).len(), 16, "{zone}");
    }
}
