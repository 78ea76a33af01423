//! IoT Hub's `fileNameFormat` for storage endpoints: the tokens `{iothub}`, `{partition}`,
//! `{YYYY}`, `{MM}`, `{DD}`, `{HH}` and `{mm}`, every one required, in any order, between
//! literal text.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::error::EndpointConfigError;

/// IoT Hub's default file name format.
pub const DEFAULT_FORMAT: &str = "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}";

const TOKENS: [&str; 7] = ["iothub", "partition", "YYYY", "MM", "DD", "HH", "mm"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Token(&'static str),
}

/// A checked file name format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNameFormat {
    pieces: Vec<Piece>,
}

impl FileNameFormat {
    /// Checks `format`: known tokens only, each at least once, literal text of letters,
    /// digits, `/`, `_`, `.` and `-`, and no empty, `.` or `..` path segment.
    pub fn parse(format: &str) -> Result<FileNameFormat, EndpointConfigError> {
        let err = |why: String| {
            EndpointConfigError::new(format!("fileNameFormat '{format}' is invalid: {why}"))
        };
        let mut pieces = Vec::new();
        let mut rest = format;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let (name, tail) = after
                    .split_once('}')
                    .ok_or_else(|| err("a '{' is not closed".into()))?;
                let token = TOKENS
                    .into_iter()
                    .find(|t| *t == name)
                    .ok_or_else(|| err(format!("{{{name}}} is not a token")))?;
                pieces.push(Piece::Token(token));
                rest = tail;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = &rest[..end];
                if let Some(bad) = text
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-')))
                {
                    return Err(err(format!("'{bad}' is not allowed")));
                }
                pieces.push(Piece::Text(text.to_owned()));
                rest = &rest[end..];
            }
        }
        let missing: Vec<String> = TOKENS
            .into_iter()
            .filter(|t| !pieces.contains(&Piece::Token(t)))
            .map(|t| format!("{{{t}}}"))
            .collect();
        if !missing.is_empty() {
            return Err(err(format!(
                "every token is required and {} is missing",
                missing.join(", ")
            )));
        }
        let parsed = FileNameFormat { pieces };
        // Segments must stay inside the container whatever the tokens expand to.
        let sample = parsed.render("hub", 0, DateTime::<Utc>::UNIX_EPOCH);
        if sample.starts_with('/')
            || sample
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(err(
                "it may not start or end with '/', hold '//', or a '.' or '..' segment".into(),
            ));
        }
        Ok(parsed)
    }

    /// The file name for a chunk of `partition` of hub `iothub` opened at `time`.
    pub fn render(&self, iothub: &str, partition: u32, time: DateTime<Utc>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Token(t) => {
                    let value = match *t {
                        "iothub" => iothub.to_owned(),
                        "partition" => partition.to_string(),
                        "YYYY" => format!("{:04}", time.year()),
                        "MM" => format!("{:02}", time.month()),
                        "DD" => format!("{:02}", time.day()),
                        "HH" => format!("{:02}", time.hour()),
                        _ => format!("{:02}", time.minute()),
                    };
                    out.push_str(&value);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn default_format_renders_as_iot_hub_does() {
        let f = FileNameFormat::parse(DEFAULT_FORMAT).expect("valid");
        let t = Utc
            .with_ymd_and_hms(2026, 3, 7, 9, 5, 59)
            .single()
            .expect("time");
        assert_eq!(f.render("myhub", 3, t), "myhub/3/2026/03/07/09/05");
    }

    #[test]
    fn tokens_may_be_reordered_with_text_between() {
        let f = FileNameFormat::parse("{YYYY}-{MM}-{DD}/{HH}.{mm}/{iothub}_{partition}")
            .expect("valid");
        let t = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 0)
            .single()
            .expect("time");
        assert_eq!(f.render("h", 12, t), "2026-12-31/23.59/h_12");
    }

    #[test]
    fn bad_formats_are_explained() {
        let e = FileNameFormat::parse("{iothub}/{YYYY}/{MM}/{DD}/{HH}/{mm}").expect_err("missing");
        assert!(e.0.contains("{partition} is missing"), "{e}");
        let e = FileNameFormat::parse("{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{ss}")
            .expect_err("unknown");
        assert!(e.0.contains("{ss} is not a token"), "{e}");
        let e = FileNameFormat::parse("{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm")
            .expect_err("open");
        assert!(e.0.contains("not closed"), "{e}");
        let e = FileNameFormat::parse("/{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}")
            .expect_err("absolute");
        assert!(e.0.contains("'/'"), "{e}");
        let e = FileNameFormat::parse("../{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}")
            .expect_err("escape");
        assert!(e.0.contains("'..'"), "{e}");
        let e = FileNameFormat::parse("{iothub} {partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}")
            .expect_err("space");
        assert!(e.0.contains("' ' is not allowed"), "{e}");
    }
}
