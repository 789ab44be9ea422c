//! Field-level validation errors, named by their JSON path (`schedule.every_seconds`) so that a
//! client can point at the offending input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the offending member, e.g. `schedule.expression`.
    #[schema(example = "schedule.every_seconds")]
    pub field: String,
    /// Why it was refused.
    #[schema(example = "must be at least 1")]
    pub message: String,
}

/// Collects every problem of one input, so a client can fix them all in one round.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was added, otherwise every error.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// Reads `T` from JSON strictly: a member of the wrong type or an unknown member is an error
/// naming its path under `prefix` (`schedule.every_seconds`). Unknown members are found with
/// `serde_ignored` rather than `#[serde(deny_unknown_fields)]`, so the published schemas stay
/// composable (an `allOf` of a closed schema could never be satisfied).
pub fn strict_from_json<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, Vec<FieldError>> {
    let at = |path: &str| match (prefix.is_empty(), path) {
        (true, ".") => "body".to_owned(),
        (true, _) => path.to_owned(),
        (false, ".") => prefix.to_owned(),
        (false, _) => format!("{prefix}.{path}"),
    };
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let read: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    // Unknown members first: a typo (`every_second`) is usually why a member is missing.
    let mut errors: Vec<FieldError> = unknown
        .iter()
        .map(|path| FieldError {
            field: at(path),
            message: format!(
                "unknown field `{}`",
                path.rsplit('.').next().unwrap_or(path)
            ),
        })
        .collect();
    match read {
        Err(e) => {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // A missing member is named itself: `schedule.dtstart is required`.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'));
            errors.push(match missing {
                Some(member) => FieldError {
                    field: match path.as_str() {
                        "." => at(member),
                        _ => at(&format!("{path}.{member}")),
                    },
                    message: "is required".to_owned(),
                },
                None => FieldError {
                    field: at(&path),
                    message,
                },
            });
            Err(errors)
        }
        Ok(_) if !errors.is_empty() => Err(errors),
        Ok(value) => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: i64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn wrong_types_and_unknown_members_are_named() {
        let wrong =
            strict_from_json::<Outer>(serde_json::json!({"inner": {"n": "x"}}), "").unwrap_err();
        assert_eq!(wrong[0].field, "inner.n");
        let missing =
            strict_from_json::<Outer>(serde_json::json!({"inner": {}}), "body").unwrap_err();
        assert_eq!(
            (missing[0].field.as_str(), missing[0].message.as_str()),
            ("body.inner.n", "is required")
        );
        let missing = strict_from_json::<Outer>(serde_json::json!({}), "").unwrap_err();
        assert_eq!(missing[0].field, "inner");
        let unknown = strict_from_json::<Outer>(
            serde_json::json!({"inner": {"n": 1, "m": 2}, "z": 3}),
            "body",
        )
        .unwrap_err();
        let fields: Vec<&str> = unknown.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["body.inner.m", "body.z"]);
        assert_eq!(unknown[0].message, "unknown field `m`");
    }
}
