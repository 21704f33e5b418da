//! A small JSON Schema checker (the subset docs/json-schema.json uses: type, const, enum,
//! properties, required, additionalProperties, items, minItems, minimum, pattern, $ref,
//! anyOf, oneOf), so every document the tests produce is checked against the documented
//! schema without a heavy dependency.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
        let text = std::fs::read_to_string(&path).expect("docs/json-schema.json");
        serde_json::from_str(&text).expect("the schema is JSON")
    })
}

/// Panics with every violation when `doc` does not match `$defs/<def>`.
pub fn assert_valid(def: &str, doc: &Value) {
    let root = schema();
    let node = root["$defs"]
        .get(def)
        .unwrap_or_else(|| panic!("docs/json-schema.json has no $defs/{def}"));
    let mut errors = Vec::new();
    check(root, node, doc, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "document does not match $defs/{def}:\n  {}\n{}",
        errors.join("\n  "),
        serde_json::to_string_pretty(doc).unwrap_or_default()
    );
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("schema uses unknown type {other}"),
    }
}

fn check(root: &Value, s: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local $defs refs only");
        check(root, &root["$defs"][name], v, at, errors);
        return;
    }
    if let Some(options) = s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Value::as_array)
    {
        let passing = options
            .iter()
            .filter(|o| {
                let mut e = Vec::new();
                check(root, o, v, at, &mut e);
                e.is_empty()
            })
            .count();
        let one = s.get("oneOf").is_some();
        if passing == 0 || (one && passing > 1) {
            errors.push(format!("{at}: matches {passing} of the alternatives"));
        }
        return;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!(
            "{at}: {v} is not one of {}",
            Value::Array(e.clone())
        ));
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} is below {min}"));
    }
    if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str()) {
        let re = regex::Regex::new(p).expect("a valid pattern");
        if !re.is_match(text) {
            errors.push(format!("{at}: {text:?} does not match {p}"));
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for r in req {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    errors.push(format!(
                        "{at}: missing field {r:?} (fields are never absent, null instead)"
                    ));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check(root, ps, val, &format!("{at}.{k}"), errors),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => errors.push(
                    format!("{at}: field {k:?} is not in the schema (document it)"),
                ),
                None => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            errors.push(format!("{at}: fewer than {min} items"));
        }
        if let Some(is) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, is, item, &format!("{at}[{i}]"), errors);
            }
        }
    }
}
