//! Placing wall-clock matches on the timeline: the `dst_gap` and `dst_overlap` policies shared by
//! every kind that matches local times (crontab, rrule).
//!
//! A rule answers one question, "the first matching local time strictly after this one"; local
//! times are seconds of the wall clock read as if it were UTC. This module turns those answers
//! into instants:
//!
//! - a matching local time inside a spring-forward gap fires once at the transition instant
//!   (`shift`, all gap matches collapsing into that one fire) or not at all (`skip`);
//! - a matching local time inside a fall-back overlap fires at its first occurrence only
//!   (`first`) or at each (`both`);
//! - a schedule never fires twice at the same instant.
//!
//! Why a local walk is enough: local time only runs backwards inside a fall-back overlap. If
//! `after` lies in the first pass of an overlap, the second occurrences of local times already
//! passed can still fire (`both`); `back_walk` finds those. Everything else is the first matching
//! local time after the local time of `after` that yields an instant after `after`.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::{DstGap, DstOverlap};

/// Where a rule's local times land: its zone and its DST policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub zone: Tz,
    pub gap: DstGap,
    pub overlap: DstOverlap,
}

impl Placement {
    /// Policies left out take Vixie cron's defaults: a fixed-time rule (one firing at named
    /// times of day) gets `shift` + `first`, any other `skip` + `both`.
    pub fn new(
        zone: Tz,
        gap: Option<DstGap>,
        overlap: Option<DstOverlap>,
        fixed_time: bool,
    ) -> Placement {
        let (default_gap, default_overlap) = if fixed_time {
            (DstGap::Shift, DstOverlap::First)
        } else {
            (DstGap::Skip, DstOverlap::Both)
        };
        Placement {
            zone,
            gap: gap.unwrap_or(default_gap),
            overlap: overlap.unwrap_or(default_overlap),
        }
    }
}

/// A rule matched against local wall-clock times.
pub trait WallClockRule {
    fn placement(&self) -> Placement;

    /// The zone whose wall clock the rule reads.
    fn zone(&self) -> Tz {
        self.placement().zone
    }

    /// How many years past the local time of `after` a search looks before answering `None`.
    fn search_years(&self) -> i64;
    /// The first matching local time strictly after `local`, if one exists up to the end of
    /// `limit_year`.
    fn next_local_after(&self, local: i64, limit_year: i64) -> Option<i64>;

    /// Whether a local wall-clock time matches the rule (DST policies not involved).
    fn matches_local(&self, local: NaiveDateTime) -> bool {
        let local = local.and_utc().timestamp();
        let year = naive(local).map_or(0, |n| i64::from(n.year()));
        self.next_local_after(local - 1, year) == Some(local)
    }
}

/// The first fire of `rule` strictly after `after`.
pub fn next_after<R: WallClockRule + ?Sized>(
    rule: &R,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // Local times are whole seconds, so "strictly after `after`" is "after its whole second".
    let after_s = after.timestamp();
    let offset = i64::from(
        rule.zone()
            .offset_from_utc_datetime(&after.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let local_after = after_s.checked_add(offset)?;
    let forward = forward_walk(rule, after_s, local_after);
    let back = match rule.placement().overlap {
        DstOverlap::Both => back_walk(rule, after_s, local_after, offset),
        DstOverlap::First => None,
    };
    let fire = match (forward, back) {
        (Some(f), Some(b)) => f.min(b),
        (f, b) => f.or(b)?,
    };
    DateTime::from_timestamp(fire, 0)
}

/// The local times `rule` matches from `from` (inclusive) to `before` (exclusive), counted.
pub fn matches_between<R: WallClockRule + ?Sized>(rule: &R, from: i64, before: i64) -> i64 {
    let limit_year = year_of(before);
    let mut count = 0;
    let mut local = from - 1;
    while let Some(next) = rule.next_local_after(local, limit_year) {
        if next >= before {
            break;
        }
        count += 1;
        local = next;
    }
    count
}

/// What a local time is in the zone, as UTC seconds.
enum Resolved {
    Single(i64),
    /// Both occurrences, earlier first.
    Twice(i64, i64),
    /// In a spring-forward gap.
    Gap,
}

fn naive(local: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(local, 0).map(|d| d.naive_utc())
}

fn year_of(local: i64) -> i64 {
    naive(local).map_or(i64::from(NaiveDateTime::MAX.year()), |n| {
        i64::from(n.year())
    })
}

fn resolve(tz: Tz, local: i64) -> Option<Resolved> {
    let offset = |o: &<Tz as TimeZone>::Offset| i64::from(o.fix().local_minus_utc());
    Some(match tz.offset_from_local_datetime(&naive(local)?) {
        LocalResult::Single(o) => Resolved::Single(local - offset(&o)),
        LocalResult::Ambiguous(a, b) => {
            let (x, y) = (local - offset(&a), local - offset(&b));
            Resolved::Twice(x.min(y), x.max(y))
        }
        LocalResult::None => Resolved::Gap,
    })
}

/// The transition instant that ends the gap containing local time `local`: the gap begins at
/// local `T + offset_before`, so `T` is that local time minus the offset before.
fn gap_end(tz: Tz, local: i64) -> Option<i64> {
    let (begin, offset_before) = GapInfo::new(&naive(local)?, &tz)?.begin?;
    Some(begin.and_utc().timestamp() - i64::from(offset_before.fix().local_minus_utc()))
}

/// The first fire from a matching local time strictly after `local_after`.
///
/// The first local time that yields an instant after `after` is the answer: a later local time
/// can only map to an earlier instant through the first pass of an overlap, and that pass is
/// ahead of `after` only when `after` is inside it, which `back_walk` covers.
fn forward_walk<R: WallClockRule + ?Sized>(rule: &R, after: i64, local_after: i64) -> Option<i64> {
    let limit_year = year_of(local_after) + rule.search_years();
    let tz = rule.zone();
    let mut local = local_after;
    loop {
        local = rule.next_local_after(local, limit_year)?;
        match resolve(tz, local)? {
            Resolved::Single(at) if at > after => return Some(at),
            Resolved::Single(_) => {}
            Resolved::Twice(first, _) if first > after => return Some(first),
            Resolved::Twice(_, second) => {
                if rule.placement().overlap == DstOverlap::Both && second > after {
                    return Some(second);
                }
            }
            Resolved::Gap => {
                if rule.placement().gap == DstGap::Shift {
                    if let Some(transition) = gap_end(tz, local) {
                        if transition > after {
                            return Some(transition);
                        }
                    }
                }
            }
        }
    }
}

/// With `both`: when `after` is in the first pass of a fall-back overlap, the second occurrence
/// of a matching local time at or before the local time of `after` is still ahead.
fn back_walk<R: WallClockRule + ?Sized>(
    rule: &R,
    after: i64,
    local_after: i64,
    offset_after: i64,
) -> Option<i64> {
    let tz = rule.zone();
    let LocalResult::Ambiguous(a, b) = tz.offset_from_local_datetime(&naive(local_after)?) else {
        return None;
    };
    let (a, b) = (
        i64::from(a.fix().local_minus_utc()),
        i64::from(b.fix().local_minus_utc()),
    );
    let (larger, smaller) = (a.max(b), a.min(b));
    if offset_after != larger {
        // `after` is already in the second pass: nothing behind it repeats.
        return None;
    }
    // The second occurrence of local L is L - smaller, after `after` exactly when
    // L > local_after - (larger - smaller).
    let mut local = local_after - (larger - smaller);
    let limit_year = year_of(local) + 1;
    loop {
        local = rule.next_local_after(local, limit_year)?;
        if local > local_after {
            return None;
        }
        if let Resolved::Twice(_, second) = resolve(tz, local)? {
            if second > after {
                return Some(second);
            }
        }
    }
}
