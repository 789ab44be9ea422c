//! Time zone names: IANA names only, with a hint when someone writes an abbreviation.
//!
//! Abbreviations are refused even where the tz database happens to carry a zone of that name
//! (`EST`, `CET`, `EST5EDT`...): those legacy zones are fixed offsets or US/EU rule sets, not
//! what a person typing "EST" in winter usually means ("New York time", DST included).
//! UTC spellings (`UTC`, `Etc/UTC`, `GMT`, `Etc/GMT`, `UCT`, `Zulu`, `Universal`) and the
//! tz database's backward-compatible links (`US/Eastern`, `Japan`) are IANA names and accepted.

use chrono_tz::{Tz, TZ_VARIANTS};

/// Abbreviations and legacy abbreviation-named zones, each with the IANA name to suggest.
const ABBREVIATIONS: &[(&str, &str)] = &[
    // Legacy zones in the tz database named like abbreviations or POSIX TZ strings.
    ("EST", "America/New_York"),
    ("MST", "America/Denver"),
    ("HST", "Pacific/Honolulu"),
    ("EST5EDT", "America/New_York"),
    ("CST6CDT", "America/Chicago"),
    ("MST7MDT", "America/Denver"),
    ("PST8PDT", "America/Los_Angeles"),
    ("CET", "Europe/Berlin"),
    ("MET", "Europe/Berlin"),
    ("EET", "Europe/Athens"),
    ("WET", "Europe/Lisbon"),
    // Common abbreviations that are not zone names at all.
    ("EDT", "America/New_York"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("MDT", "America/Denver"),
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("AKST", "America/Anchorage"),
    ("AKDT", "America/Anchorage"),
    ("HDT", "America/Adak"),
    ("AST", "America/Halifax"),
    ("ADT", "America/Halifax"),
    ("NST", "America/St_Johns"),
    ("NDT", "America/St_Johns"),
    ("BRT", "America/Sao_Paulo"),
    ("ART", "America/Argentina/Buenos_Aires"),
    ("BST", "Europe/London"),
    ("IST", "Asia/Kolkata"),
    ("CEST", "Europe/Berlin"),
    ("EEST", "Europe/Athens"),
    ("WEST", "Europe/Lisbon"),
    ("MSK", "Europe/Moscow"),
    ("SAST", "Africa/Johannesburg"),
    ("WAT", "Africa/Lagos"),
    ("CAT", "Africa/Maputo"),
    ("EAT", "Africa/Nairobi"),
    ("PKT", "Asia/Karachi"),
    ("ICT", "Asia/Bangkok"),
    ("WIB", "Asia/Jakarta"),
    ("SGT", "Asia/Singapore"),
    ("HKT", "Asia/Hong_Kong"),
    ("JST", "Asia/Tokyo"),
    ("KST", "Asia/Seoul"),
    ("AWST", "Australia/Perth"),
    ("ACST", "Australia/Adelaide"),
    ("ACDT", "Australia/Adelaide"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
    ("NZST", "Pacific/Auckland"),
    ("NZDT", "Pacific/Auckland"),
];

/// Parses an IANA time zone name ("UTC", "Europe/Berlin"); the error is a complete sentence.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    if let Some((_, suggestion)) = ABBREVIATIONS
        .iter()
        .find(|(abbreviation, _)| abbreviation.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "\"{name}\" is an abbreviation, not an IANA time zone name; use a name such as \"{suggestion}\""
        ));
    }
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    if name.trim().is_empty() {
        return Err(
            "the time zone is empty; use an IANA name such as \"Europe/Berlin\"".to_string(),
        );
    }
    // Only on the error path: a wrong case is the commonest slip, so name the right spelling.
    if let Some(tz) = TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "unknown time zone \"{name}\"; did you mean \"{}\"?",
            tz.name()
        ));
    }
    Err(format!(
        "unknown time zone \"{name}\"; use an IANA name such as \"Europe/Berlin\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iana_names() {
        for name in [
            "UTC",
            "Etc/UTC",
            "GMT",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "America/Argentina/Buenos_Aires",
            "US/Eastern",
        ] {
            let tz = parse_timezone(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(tz.name(), name);
        }
    }

    #[test]
    fn refuses_abbreviations_with_a_hint() {
        assert_eq!(
            parse_timezone("EST").unwrap_err(),
            "\"EST\" is an abbreviation, not an IANA time zone name; use a name such as \"America/New_York\""
        );
        for (name, suggestion) in [
            ("PST", "America/Los_Angeles"),
            ("CET", "Europe/Berlin"),
            ("EET", "Europe/Athens"),
            ("MST", "America/Denver"),
            ("HST", "Pacific/Honolulu"),
            ("EST5EDT", "America/New_York"),
            ("PST8PDT", "America/Los_Angeles"),
            ("cest", "Europe/Berlin"),
        ] {
            let message = parse_timezone(name).unwrap_err();
            assert!(
                message.starts_with(&format!("\"{name}\" is an abbreviation")),
                "{message}"
            );
            assert!(message.ends_with(&format!("\"{suggestion}\"")), "{message}");
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            parse_timezone("Foo/Bar").unwrap_err(),
            "unknown time zone \"Foo/Bar\"; use an IANA name such as \"Europe/Berlin\""
        );
        assert_eq!(
            parse_timezone("europe/berlin").unwrap_err(),
            "unknown time zone \"europe/berlin\"; did you mean \"Europe/Berlin\"?"
        );
        assert_eq!(
            parse_timezone("").unwrap_err(),
            "the time zone is empty; use an IANA name such as \"Europe/Berlin\""
        );
        assert!(parse_timezone("+02:00").is_err());
        assert!(parse_timezone(" UTC").is_err());
    }
}
