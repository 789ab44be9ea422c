//! JSON merge patches (RFC 7396): applying one (a `PATCH` of a schedule) and finding the one that
//! turns a document into another (what a revision changed).

use serde_json::{Map, Value};

/// Applies `patch` to `target`: objects merge member by member, `null` removes a member,
/// anything else replaces.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            apply(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge patch that [`apply`] turns `before` into `after` with: the members that changed,
/// object members as patches of their own, removed ones as `null`; `{}` when nothing changed.
///
/// A merge patch cannot set a member to `null` (that removes it), so a `null` inside `after`'s
/// objects comes out as a removal: the documents, not the patches, are the record.
pub fn between(before: &Value, after: &Value) -> Value {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return after.clone();
    };
    let mut patch = Map::new();
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in after {
        match before.get(key) {
            Some(old) if old == value => {}
            Some(old @ Value::Object(_)) if value.is_object() => {
                patch.insert(key.clone(), between(old, value));
            }
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn apply_follows_rfc_7396() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            apply(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn between_holds_only_what_changed() {
        let before = json!({
            "name": "report", "description": "daily",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": "https://a.example", "headers": {"x": "1"}},
            "then": [{"url": "https://b.example"}]
        });
        let after = json!({
            "name": "report",
            "schedule": {"kind": "interval", "every_seconds": 120},
            "target": {"url": "https://a.example", "headers": {}},
            "then": [{"url": "https://c.example"}],
            "enabled": false
        });
        let patch = between(&before, &after);
        assert_eq!(
            patch,
            json!({
                "description": null,
                "schedule": {"every_seconds": 120},
                "target": {"headers": {"x": null}},
                "then": [{"url": "https://c.example"}],
                "enabled": false
            })
        );
        let mut replayed = before.clone();
        apply(&mut replayed, &patch);
        assert_eq!(replayed, after);
        assert_eq!(between(&after, &after), json!({}));
    }

    #[test]
    fn between_anything_but_two_objects_is_the_new_value() {
        assert_eq!(between(&Value::Null, &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(between(&json!({"a": 1}), &Value::Null), Value::Null);
        assert_eq!(between(&json!([1]), &json!([2])), json!([2]));
    }
}
