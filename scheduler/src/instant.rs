//! Instants as clients write them: RFC 3339 read strictly, and the range every instant hookbeat
//! accepts, computes or stores lies in (1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z).
//!
//! The range is what both databases order correctly: SQLite keeps timestamps as text, and a year
//! past 9999 (`+10000-…`) sorts before every real one. A client's instant outside it is a 422
//! naming the field; a *computed* fire past it means the schedule has no next fire. Instants are
//! kept and honoured to the microsecond, as both databases store them; a finer fraction is a 422
//! rather than cut off.

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer};

/// The earliest instant hookbeat accepts: the Unix epoch.
pub const MIN: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest instant hookbeat accepts or computes: 9999-12-31T23:59:59Z.
pub fn max() -> DateTime<Utc> {
    DateTime::from_timestamp(MAX_TIMESTAMP, 0).expect("9999-12-31T23:59:59Z is representable")
}

/// 9999-12-31T23:59:59Z in Unix seconds.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// The range as text, for error messages.
pub const RANGE: &str = "1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z";

/// Whether `at` lies within [`MIN`] … [`max`].
pub fn in_range(at: DateTime<Utc>) -> bool {
    at >= MIN && at.timestamp() <= MAX_TIMESTAMP
}

/// `at` when it lies within the range, else `None`: how a computed fire past year 9999 becomes
/// "no next fire".
pub fn within_range(at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    in_range(at).then_some(at)
}

/// Reads an RFC 3339 date-time exactly as its grammar (section 5.6) spells it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, four-digit year and two-digit fields, `T` and `Z`
/// in either case. Lenient forms (`2026-1-1`, a space for `T`, a missing offset, a signed
/// six-digit year) are refused, so what a client sent is what it meant.
pub fn parse_strict(text: &str) -> Result<DateTime<Utc>, String> {
    const SHAPE: &str = "must be an RFC 3339 date-time such as 2030-01-01T09:00:00Z; the input";
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, allowed: &[u8]| bytes.get(i).is_some_and(|b| allowed.contains(b));
    let head_ok = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !head_ok {
        return Err(format!("{SHAPE} {text:?} is not one"));
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(format!("{SHAPE} {text:?} is not one"));
        }
    }
    let offset_ok = match bytes.get(i) {
        Some(b'Z' | b'z') => i + 1 == bytes.len(),
        Some(b'+' | b'-') => {
            i + 6 == bytes.len() && digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6)
        }
        _ => false,
    };
    if !offset_ok {
        return Err(format!(
            "{SHAPE} {text:?} is not one (it needs Z or an offset such as +01:00)"
        ));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("is not a valid date-time ({e}), got {text:?}"))
}

/// Adds the range check to [`parse_strict`].
pub fn parse_in_range(text: &str) -> Result<DateTime<Utc>, String> {
    let at = parse_strict(text)?;
    if !in_range(at) {
        return Err(format!("must lie within {RANGE}, got {text:?}"));
    }
    Ok(at)
}

/// A fire's instant (`at`, `anchor`): within the range, and kept and honoured to the microsecond,
/// as both databases store it. A finer fraction would be cut off, so it is refused.
pub fn parse_fire(text: &str) -> Result<DateTime<Utc>, String> {
    let at = parse_in_range(text)?;
    if at.nanosecond() % 1_000 != 0 {
        return Err(format!(
            "must be precise to the microsecond at most (up to 6 fractional digits), got {text:?}"
        ));
    }
    Ok(at)
}

/// A lower bound ("no fire before") to the microsecond, with the same meaning for fires, which
/// are all on whole microseconds: rounded up.
pub fn ceil_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_micros(at);
    if floor == at {
        at
    } else {
        floor
            .checked_add_signed(chrono::Duration::microseconds(1))
            .unwrap_or(floor)
    }
}

/// An upper bound ("no fire after", "strictly after") to the microsecond: rounded down.
pub fn floor_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

/// `#[serde(deserialize_with = "…")]` for a fire's instant (see [`parse_fire`]).
pub fn deserialize_fire<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_fire(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional fire instant (`null` is `None`).
pub fn deserialize_fire_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse_fire(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `#[serde(deserialize_with = "…")]` for a required instant: strict RFC 3339 within the range.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_in_range(&text).map_err(serde::de::Error::custom)
}

/// `#[serde(default, deserialize_with = "…")]` for an optional instant (`null` is `None`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse_in_range(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn reads_rfc_3339_and_nothing_looser() {
        let ok = [
            ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ("2026-01-01t00:00:00z", "2026-01-01T00:00:00Z"),
            ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"),
            ("2026-01-01T00:00:00.250Z", "2026-01-01T00:00:00.250Z"),
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ];
        for (text, expected) in ok {
            assert_eq!(
                parse_in_range(text).unwrap(),
                expected.parse::<DateTime<Utc>>().unwrap(),
                "{text}"
            );
        }
        let refused = [
            "2026-1-1T00:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00Z ",
            "+10000-01-01T00:00:00Z",
            "-262143-01-01T00:00:00Z",
            "+262142-12-31T23:59:59Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "",
        ];
        for text in refused {
            assert!(parse_in_range(text).is_err(), "{text:?} must be refused");
        }
    }

    #[test]
    fn the_range_is_1970_to_9999() {
        for text in [
            "1969-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-00:01",
        ] {
            let error = parse_in_range(text).unwrap_err();
            assert!(error.contains("must lie within"), "{text}: {error}");
        }
        assert_eq!(max().to_rfc3339(), "9999-12-31T23:59:59+00:00");
        assert!(within_range(max() + Duration::seconds(1)).is_none());
        assert_eq!(within_range(max()), Some(max()));
    }

    #[test]
    fn fractions_are_kept_to_the_microsecond_and_finer_ones_refused() {
        let micro = parse_fire("2026-01-01T00:00:00.000001Z").unwrap();
        assert_eq!(micro.timestamp_subsec_micros(), 1);
        let finer = parse_fire("2026-01-01T00:00:00.000000001Z").unwrap_err();
        assert!(finer.contains("microsecond"), "{finer}");
        // Bounds keep their meaning on microsecond fires.
        let nano = parse_in_range("2026-01-01T00:00:00.000000001Z").unwrap();
        assert_eq!(ceil_micros(nano), micro);
        assert_eq!(
            floor_micros(nano),
            parse_fire("2026-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(ceil_micros(micro), micro);
    }
}
