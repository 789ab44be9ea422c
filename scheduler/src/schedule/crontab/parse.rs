//! Parsing of 5-field crontab expressions and macros into per-field bitsets.
//!
//! Syntax (POSIX, plus the Vixie/cronie extensions the contract names): each field is a comma
//! list of items; an item is `*`, `N`, `N-M`, any of these followed by `/STEP`, month names
//! `JAN`-`DEC` and weekday names `SUN`-`SAT` (case-insensitive, also inside ranges), day of week
//! 0 or 7 = Sunday. `N/STEP` means `N-MAX/STEP`, as cronie reads it.

use super::{CronError, CronField};

/// A parsed crontab expression: one bitset per field plus the Vixie "restricted" flags.
///
/// Bit `n` of a bitset is set when value `n` matches: minutes 0-59, hours 0-23, days of month
/// 1-31, months 1-12, days of week 0-6 (Sunday = 0; a written 7 lands on bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronExpr {
    pub(super) minutes: u64,
    pub(super) hours: u64,
    pub(super) days_of_month: u64,
    pub(super) months: u64,
    pub(super) days_of_week: u64,
    /// The day-of-month field does not start with `*` (Vixie's rule for the OR of the two day
    /// fields; `*/2` is therefore not restricted).
    pub(super) dom_restricted: bool,
    pub(super) dow_restricted: bool,
    /// Neither the minute nor the hour field starts with `*` (Vixie's test for the DST policy).
    fixed_time: bool,
}

/// What a field accepts; the names are the ones error messages use.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Names map to `first_name_value + index`.
    first_name_value: u32,
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    first_name_value: 0,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    first_name_value: 0,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name_value: 0,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    first_name_value: 1,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    first_name_value: 0,
};

const FIELDS_HINT: &str = "minute hour day-of-month month day-of-week";
const MACROS_HINT: &str = "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";

fn expression_error(message: String) -> CronError {
    CronError {
        field: CronField::Expression,
        message,
    }
}

impl CronExpr {
    /// Parses a 5-field expression or one of the macros; errors name the offending part.
    pub fn parse(expression: &str) -> Result<CronExpr, CronError> {
        let is_blank = |c: char| c == ' ' || c == '\t';
        let text = expression.trim_matches(is_blank);
        if text.is_empty() {
            return Err(expression_error(format!(
                "the expression is empty; expected 5 fields ({FIELDS_HINT}) or a macro such as @daily"
            )));
        }
        if text.starts_with('@') {
            return Self::parse_macro(text);
        }
        let fields: Vec<&str> = text.split(is_blank).filter(|f| !f.is_empty()).collect();
        if fields.len() != 5 {
            let extra = if fields.len() > 5 {
                "; seconds and year fields are not supported"
            } else {
                ""
            };
            return Err(expression_error(format!(
                "expected 5 fields ({FIELDS_HINT}), got {}{extra}",
                fields.len()
            )));
        }
        let parse =
            |spec: &FieldSpec, text: &str| parse_field(spec, text).map_err(expression_error);
        let minutes = parse(&MINUTE, fields[0])?;
        let hours = parse(&HOUR, fields[1])?;
        let days_of_month = parse(&DAY_OF_MONTH, fields[2])?;
        let months = parse(&MONTH, fields[3])?;
        let mut days_of_week = parse(&DAY_OF_WEEK, fields[4])?;
        // 7 is another name for Sunday.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        let starts_with_star = |f: &str| f.starts_with('*');
        Ok(CronExpr {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_restricted: !starts_with_star(fields[2]),
            dow_restricted: !starts_with_star(fields[4]),
            fixed_time: !starts_with_star(fields[0]) && !starts_with_star(fields[1]),
        })
    }

    /// Vixie's fixed-time test: the first character of neither the minute nor the hour field is
    /// `*` (macros expanded first). Such a job gets the `shift` + `first` DST defaults.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    fn parse_macro(text: &str) -> Result<CronExpr, CronError> {
        if text.contains([' ', '\t']) {
            let name = text.split([' ', '\t']).next().unwrap_or(text);
            return Err(expression_error(format!(
                "a macro stands alone: \"{name}\" takes no other fields"
            )));
        }
        let expansion = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => {
                return Err(expression_error(format!(
                    "unknown macro \"{text}\"; use one of {MACROS_HINT}"
                )))
            }
        };
        Self::parse(expansion)
    }
}

/// Parses one field into a bitset; the error is the complete message.
fn parse_field(spec: &FieldSpec, field: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in field.split(',') {
        // Quote the item alone when it is the whole field, so messages read naturally.
        let part = if item == field {
            format!("{} field \"{field}\"", spec.name)
        } else {
            format!("\"{item}\" in {} field \"{field}\"", spec.name)
        };
        if item.is_empty() {
            return Err(format!(
                "{} field \"{field}\" has an empty list item",
                spec.name
            ));
        }
        if let Some(bad) = item
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '*' | '-' | '/')))
        {
            return Err(format!("{part} contains '{bad}', which is not allowed"));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = match step {
            None => None,
            Some(s) if s.contains('/') => return Err(format!("{part} has more than one '/'")),
            Some(s) => {
                let n = parse_number(s)
                    .ok_or_else(|| format!("step \"{s}\" in \"{item}\" is not a number"))?;
                if n == 0 {
                    return Err(format!("step 0 is not allowed in \"{item}\""));
                }
                let span = spec.max - spec.min + 1;
                if n > u64::from(span) {
                    return Err(format!(
                        "step {n} in \"{item}\" is larger than the {} range {}-{}",
                        spec.name, spec.min, spec.max
                    ));
                }
                Some(n as u32)
            }
        };
        let (low, high) = if base == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = base.split_once('-') {
            if a.is_empty() || b.is_empty() || b.contains('-') {
                return Err(format!("{part} is not a valid range"));
            }
            let low = parse_value(spec, a)?;
            let mut high = parse_value(spec, b)?;
            // `SAT-SUN` / `5-0`: a weekday range ending on Sunday means Sunday as 7.
            if spec.name == DAY_OF_WEEK.name && high == 0 && low > 0 {
                high = 7;
            }
            if low > high {
                return Err(format!(
                    "{} range \"{base}\" is backwards: {low} comes after {high}",
                    spec.name
                ));
            }
            (low, high)
        } else if base.contains('*') {
            return Err(format!(
                "{part} is not valid: '*' must stand alone or as \"*/STEP\""
            ));
        } else {
            let value = parse_value(spec, base)?;
            // `N/STEP` is read as `N-MAX/STEP` (cronie); a bare `N` is the single value.
            (value, if step.is_some() { spec.max } else { value })
        };
        let step = step.unwrap_or(1);
        let mut value = low;
        while value <= high {
            bits |= 1u64 << value;
            value += step;
        }
    }
    Ok(bits)
}

/// Decimal digits only; `None` for anything else (signs, empty).
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate absurd lengths so the range check reports them instead of overflowing.
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

fn parse_value(spec: &FieldSpec, text: &str) -> Result<u32, String> {
    if let Some(n) = parse_number(text) {
        if n < u64::from(spec.min) || n > u64::from(spec.max) {
            return Err(format!(
                "{} {text} is out of range {}-{}",
                spec.name, spec.min, spec.max
            ));
        }
        return Ok(n as u32);
    }
    if text.bytes().all(|b| b.is_ascii_alphabetic()) && !spec.names.is_empty() {
        let upper = text.to_ascii_uppercase();
        if let Some(index) = spec.names.iter().position(|n| *n == upper) {
            return Ok(spec.first_name_value + index as u32);
        }
        let (first, last) = (spec.names[0], spec.names[spec.names.len() - 1]);
        return Err(format!(
            "unknown {} name \"{text}\"; use {first}-{last} or {}-{}",
            spec.name, spec.min, spec.max
        ));
    }
    Err(format!("{} value \"{text}\" is not a number", spec.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(values: impl IntoIterator<Item = u32>) -> u64 {
        values.into_iter().fold(0, |acc, v| acc | 1u64 << v)
    }

    fn err(expression: &str) -> String {
        let e = CronExpr::parse(expression).expect_err(expression);
        assert_eq!(e.field, CronField::Expression);
        e.message
    }

    #[test]
    fn parses_lists_ranges_and_steps() {
        let e = CronExpr::parse("1,5,10-12 */6 1-10/3 */4 MON-FRI").unwrap();
        assert_eq!(e.minutes, bits([1, 5, 10, 11, 12]));
        assert_eq!(e.hours, bits([0, 6, 12, 18]));
        assert_eq!(e.days_of_month, bits([1, 4, 7, 10]));
        assert_eq!(e.months, bits([1, 5, 9]));
        assert_eq!(e.days_of_week, bits([1, 2, 3, 4, 5]));
        assert!(e.dom_restricted && e.dow_restricted);
    }

    #[test]
    fn names_are_case_insensitive_and_work_in_ranges_and_steps() {
        let e = CronExpr::parse("0 0 * jan-Mar,DEC sun,Wed-fri/2").unwrap();
        assert_eq!(e.months, bits([1, 2, 3, 12]));
        assert_eq!(e.days_of_week, bits([0, 3, 5]));
    }

    #[test]
    fn sunday_is_zero_or_seven() {
        for dow in ["0", "7", "SUN", "0,7"] {
            let e = CronExpr::parse(&format!("0 0 * * {dow}")).unwrap();
            assert_eq!(e.days_of_week, bits([0]), "{dow}");
        }
        assert_eq!(
            CronExpr::parse("0 0 * * 5-7").unwrap().days_of_week,
            bits([5, 6, 0])
        );
        assert_eq!(
            CronExpr::parse("0 0 * * SAT-SUN").unwrap().days_of_week,
            bits([6, 0])
        );
        assert_eq!(
            CronExpr::parse("0 0 * * 0-7").unwrap().days_of_week,
            bits(0..7)
        );
    }

    #[test]
    fn single_value_with_step_runs_to_the_end_of_the_field() {
        assert_eq!(
            CronExpr::parse("50/3 * * * *").unwrap().minutes,
            bits([50, 53, 56, 59])
        );
    }

    #[test]
    fn whitespace_between_fields_may_be_any_run_of_spaces_and_tabs() {
        let a = CronExpr::parse("  0\t\t9  *   * \t MON-FRI\t").unwrap();
        let b = CronExpr::parse("0 9 * * MON-FRI").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn restricted_follows_the_first_character() {
        let e = CronExpr::parse("* * */2 * */3").unwrap();
        assert!(!e.dom_restricted && !e.dow_restricted);
        let e = CronExpr::parse("* * 1-31 * 0-7").unwrap();
        assert!(e.dom_restricted && e.dow_restricted);
    }

    #[test]
    fn fixed_time_follows_vixie() {
        let cases = [
            ("30 2 * * *", true),
            ("0 0 1 1 *", true),
            ("0 * * * *", false),
            ("*/5 * * * *", false),
            ("* 3 * * *", false),
            ("0-59/5 2 * * *", true),
            ("@daily", true),
            ("@midnight", true),
            ("@weekly", true),
            ("@monthly", true),
            ("@yearly", true),
            ("@annually", true),
            ("@hourly", false),
        ];
        for (expression, fixed) in cases {
            assert_eq!(
                CronExpr::parse(expression).unwrap().is_fixed_time(),
                fixed,
                "{expression}"
            );
        }
    }

    #[test]
    fn macros_expand_to_their_vixie_definitions() {
        let pairs = [
            ("@yearly", "0 0 1 1 *"),
            ("@ANNUALLY", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ];
        for (m, expansion) in pairs {
            assert_eq!(
                CronExpr::parse(m).unwrap(),
                CronExpr::parse(expansion).unwrap(),
                "{m}"
            );
        }
    }

    #[test]
    fn errors_name_the_part() {
        let cases = [
            ("60 * * * *", "minute 60 is out of range 0-59"),
            ("* 24 * * *", "hour 24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month 32 is out of range 1-31"),
            ("* * * 13 *", "month 13 is out of range 1-12"),
            ("* * * * 8", "day-of-week 8 is out of range 0-7"),
            ("* 2- * * *", "hour field \"2-\" is not a valid range"),
            ("* -2 * * *", "hour field \"-2\" is not a valid range"),
            ("* 1,2- * * *", "\"2-\" in hour field \"1,2-\" is not a valid range"),
            ("*/0 * * * *", "step 0 is not allowed in \"*/0\""),
            ("1-10/0 * * * *", "step 0 is not allowed in \"1-10/0\""),
            ("*/x * * * *", "step \"x\" in \"*/x\" is not a number"),
            ("*/61 * * * *", "step 61 in \"*/61\" is larger than the minute range 0-59"),
            ("* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6; seconds and year fields are not supported"),
            ("0 0 0 * * * 2030", "expected 5 fields (minute hour day-of-month month day-of-week), got 7; seconds and year fields are not supported"),
            ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
            ("", "the expression is empty; expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily"),
            ("@reboot", "unknown macro \"@reboot\"; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
            ("@daily 5", "a macro stands alone: \"@daily\" takes no other fields"),
            ("* * * FOO *", "unknown month name \"FOO\"; use JAN-DEC or 1-12"),
            ("* * * * MONDAY", "unknown day-of-week name \"MONDAY\"; use SUN-SAT or 0-7"),
            ("MON * * * *", "minute value \"MON\" is not a number"),
            ("1,,2 * * * *", "minute field \"1,,2\" has an empty list item"),
            ("* * ? * *", "day-of-month field \"?\" contains '?', which is not allowed"),
            ("* * L * *", "day-of-month value \"L\" is not a number"),
            ("* * * * 1#2", "day-of-week field \"1#2\" contains '#', which is not allowed"),
            ("10-5 * * * *", "minute range \"10-5\" is backwards: 10 comes after 5"),
            ("* * * * FRI-MON", "day-of-week range \"FRI-MON\" is backwards: 5 comes after 1"),
            ("1-2-3 * * * *", "minute field \"1-2-3\" is not a valid range"),
            ("*/2/3 * * * *", "minute field \"*/2/3\" has more than one '/'"),
            ("5* * * * *", "minute field \"5*\" is not valid: '*' must stand alone or as \"*/STEP\""),
            ("99999999999999999999999 * * * *", "minute 99999999999999999999999 is out of range 0-59"),
            ("+5 * * * *", "minute field \"+5\" contains '+', which is not allowed"),
        ];
        for (expression, message) in cases {
            assert_eq!(err(expression), message, "{expression:?}");
        }
    }
}
