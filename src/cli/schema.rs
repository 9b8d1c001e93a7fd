//! `leakrun schema`: the JSON Schema of the scenario format, for editors (taplo, Even Better TOML)
//! and for tests. It is derived from the raw structs the parser reads (`scenario::raw`), so it names
//! exactly the keys the parser accepts, with their doc comments as descriptions; it cannot drift
//! from the parser the way a hand-written schema would.

use std::io::Write;

use schemars::generate::SchemaSettings;

use crate::exit::Exit;
use crate::scenario::raw::RawScenario;

/// The scenario format as a JSON Schema (draft-07).
///
/// TOML has no null, so an optional key is absent rather than nullable. What the schema cannot say
/// (ranges, which keys belong to which server target, durations' units) the parser still judges,
/// with file, line and key.
pub fn scenario_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RawScenario>();
    schema.insert("title".into(), "leakrun scenario".into());
    let mut value = schema.to_value();
    drop_null(&mut value);
    value
}

/// Removes the `null` schemars adds for an `Option` field: TOML has no null, and an editor should
/// not offer one. `"type": ["string", "null"]` becomes `"type": "string"`, and
/// `"anyOf": [{"$ref": ...}, {"type": "null"}]` becomes the `$ref`.
fn drop_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|option| option.get("type").is_none_or(|t| t != "null"));
                if options.len() == 1
                    && let Value::Object(only) = options.remove(0)
                {
                    map.remove("anyOf");
                    map.extend(only);
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Prints the schema on stdout, pretty, for `leakrun schema > scenario.schema.json`.
pub fn print() -> Exit {
    let text = match serde_json::to_string_pretty(&scenario_schema()) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot write the schema: {error}");
            return Exit::Infrastructure;
        }
    };
    // A closed pipe (`leakrun schema | head`) is not worth a panic.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => Exit::Pass,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Exit::Pass,
        Err(error) => {
            eprintln!("error: cannot write the schema: {error}");
            Exit::Infrastructure
        }
    }
}
