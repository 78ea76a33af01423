//! `--output json|table`, as az prints them: JSON pretty-printed with two-space indents and
//! sorted keys; a table with one column per top-level scalar field.

use std::io::Write as _;

use serde_json::Value;

/// `-o/--output`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Json,
    Table,
}

/// Prints a command's result on stdout. A reader that has gone away (`| head`) is not an
/// error.
pub fn print(value: &Value, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Format::Table => table(value),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

/// A plain aligned table: a header (field names with their first letter capitalised, as az
/// shows them), a dashed rule, then one row per object. Nested objects and arrays are left out.
pub fn table(value: &Value) -> String {
    let rows: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) => vec![map],
        Value::Null => return String::new(),
        other => return format!("{}\n", cell(other)),
    };
    let mut columns: Vec<&str> = Vec::new();
    for row in &rows {
        for (key, v) in row.iter() {
            if !v.is_object() && !v.is_array() && !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    if columns.is_empty() {
        return String::new();
    }
    let header: Vec<String> = columns.iter().map(|c| capitalize(c)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.get(*c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = String::new();
    for line in [&header, &rule].into_iter().chain(body.iter()) {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_scalar_columns() {
        let v = json!([
            {"deviceId": "d1", "status": "enabled", "authentication": {"type": "sas"}, "cloudToDeviceMessageCount": 0},
            {"deviceId": "device-two", "status": "disabled", "statusReason": null, "cloudToDeviceMessageCount": 12},
        ]);
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[0],
            "CloudToDeviceMessageCount  DeviceId    Status    StatusReason"
        );
        assert!(lines[1].starts_with("-------------------------  ----------  --------"));
        assert_eq!(lines[2], "0                          d1          enabled");
        assert_eq!(lines[3], "12                         device-two  disabled");
    }

    #[test]
    fn single_objects_and_scalars() {
        let t = table(&json!({"connectionString": "HostName=h"}));
        assert_eq!(t, "ConnectionString\n----------------\nHostName=h\n");
        assert_eq!(table(&json!("x")), "x\n");
        assert_eq!(table(&Value::Null), "");
        assert_eq!(table(&json!([])), "");
    }
}
