//! The local-time search: bitset jumps over local wall-clock time to the next matching minute.
//!
//! The search runs on local "seconds since the epoch" (the wall clock read as if it were UTC)
//! split into calendar parts with integer arithmetic, jumping month -> day -> hour -> minute to
//! the next set bit. Placing a match on the timeline (DST gaps and overlaps) is
//! `schedule::wall_clock`'s.

use chrono::NaiveDateTime;

use super::CronSchedule;

/// How far ahead (in years) a search goes before answering `None`. The sparsest expression that
/// can fire, "February 29 that is a Monday" in `and` mode, goes up to 40 years between fires
/// (2072 -> 2112, because 2100 is not a leap year); 50 covers it with room to spare.
pub(super) const SEARCH_YEARS: i64 = 50;

const SECONDS_PER_DAY: i64 = 86_400;

/// A local wall-clock minute as calendar parts; `minute` may be 60 and `hour` 24 as "carry"
/// values that the search normalises by moving on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

/// Day-of-month bits (1-31) on which each weekday set bit falls, for a month whose 1st is the
/// weekday given by the index (0 = Sunday).
pub(super) fn weekday_masks(days_of_week: u64) -> [u64; 7] {
    let mut masks = [0u64; 7];
    for (first_weekday, mask) in masks.iter_mut().enumerate() {
        for day in 1..=31u32 {
            let weekday = (first_weekday as u32 + day - 1) % 7;
            if days_of_week & (1 << weekday) != 0 {
                *mask |= 1 << day;
            }
        }
    }
    masks
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The local minute containing local second `local` (floor).
fn civil_of(local: i64) -> Civil {
    let days = local.div_euclid(SECONDS_PER_DAY);
    let second_of_day = local.rem_euclid(SECONDS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: second_of_day / 3600,
        minute: second_of_day % 3600 / 60,
    }
}

fn local_seconds(c: Civil) -> i64 {
    days_from_civil(c.year, c.month, c.day) * SECONDS_PER_DAY
        + i64::from(c.hour) * 3600
        + i64::from(c.minute) * 60
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

impl CronSchedule {
    /// Bits 1..=31 of the days of `month` that match both day fields under the day rule.
    fn month_days(&self, year: i64, month: u32) -> u64 {
        let first_weekday = (days_from_civil(year, month, 1) + 4).rem_euclid(7) as usize;
        let by_weekday = self.dow_masks[first_weekday];
        let matching = if self.day_union {
            self.expr.days_of_month | by_weekday
        } else {
            self.expr.days_of_month & by_weekday
        };
        let valid = (1u64 << (days_in_month(year, month) + 1)) - 2;
        matching & valid
    }

    /// The first matching local minute at or after `from`, if one exists up to `limit_year`.
    fn next_local_match(&self, from: Civil, limit_year: i64) -> Option<Civil> {
        let Civil {
            mut year,
            mut month,
            mut day,
            mut hour,
            mut minute,
        } = from;
        let expr = &self.expr;
        loop {
            if year > limit_year {
                return None;
            }
            match next_bit(expr.months, month) {
                Some(m) if m <= 12 => {
                    if m != month {
                        (month, day, hour, minute) = (m, 1, 0, 0);
                    }
                }
                _ => {
                    (year, month, day, hour, minute) = (year + 1, 1, 1, 0, 0);
                    continue;
                }
            }
            match next_bit(self.month_days(year, month), day) {
                Some(d) => {
                    if d != day {
                        (day, hour, minute) = (d, 0, 0);
                    }
                }
                None => {
                    (month, day, hour, minute) = (month + 1, 1, 0, 0);
                    continue;
                }
            }
            match next_bit(expr.hours, hour) {
                Some(h) => {
                    if h != hour {
                        (hour, minute) = (h, 0);
                    }
                }
                None => {
                    (day, hour, minute) = (day + 1, 0, 0);
                    continue;
                }
            }
            match next_bit(expr.minutes, minute) {
                Some(m) => {
                    return Some(Civil {
                        year,
                        month,
                        day,
                        hour,
                        minute: m,
                    })
                }
                None => {
                    (hour, minute) = (hour + 1, 0);
                }
            }
        }
    }
}

pub(super) fn matches_local(schedule: &CronSchedule, local: NaiveDateTime) -> bool {
    let c = civil_of(local.and_utc().timestamp());
    let e = &schedule.expr;
    e.minutes & (1 << c.minute) != 0
        && e.hours & (1 << c.hour) != 0
        && e.months & (1 << c.month) != 0
        && schedule.month_days(c.year, c.month) & (1 << c.day) != 0
}

/// The first matching local minute strictly after local second `local`, up to `limit_year`.
pub(super) fn next_local_after(
    schedule: &CronSchedule,
    local: i64,
    limit_year: i64,
) -> Option<i64> {
    let from = civil_of((local.div_euclid(60) + 1) * 60);
    schedule
        .next_local_match(from, limit_year)
        .map(local_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversions_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn next_bit_finds_the_lowest_at_or_above() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(u64::MAX, 63), Some(63));
        assert_eq!(next_bit(u64::MAX, 64), None);
    }

    #[test]
    fn weekday_masks_place_weekdays_on_month_days() {
        // Mondays only; a month starting on a Sunday has Mondays on the 2nd, 9th, ...
        let masks = weekday_masks(1 << 1);
        assert_eq!(
            masks[0],
            (1 << 2) | (1 << 9) | (1 << 16) | (1 << 23) | (1 << 30)
        );
        // Starting on a Monday: 1, 8, 15, 22, 29.
        assert_eq!(
            masks[1],
            (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29)
        );
    }

    #[test]
    fn days_in_month_knows_leap_years() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_in_month(2026, 12), 31);
    }
}
