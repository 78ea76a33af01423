//! What a telemetry body's content type says it is. The event log keeps a body's bytes as the
//! device sent them; readers may add a decoded view, but only where the message declares its
//! body JSON (parsed) or text. Bytes that merely look like JSON are not JSON to a reader.

/// The kind of body a message's `content-type` system property declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredBody {
    /// `application/json` or a `+json` media type (`application/merge-patch+json`, …).
    Json,
    /// A `text/*` media type.
    Text,
    /// Anything else, or no content type.
    Undeclared,
}

impl DeclaredBody {
    /// Reads a content type such as `application/json; charset=utf-8` (case-insensitive,
    /// parameters ignored).
    pub fn of(content_type: Option<&str>) -> DeclaredBody {
        let Some(ct) = content_type else {
            return DeclaredBody::Undeclared;
        };
        let media = ct.split(';').next().unwrap_or_default().trim();
        let media = media.to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            DeclaredBody::Json
        } else if media.starts_with("text/") {
            DeclaredBody::Text
        } else {
            DeclaredBody::Undeclared
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(DeclaredBody::of(None), DeclaredBody::Undeclared);
        assert_eq!(
            DeclaredBody::of(Some("application/json")),
            DeclaredBody::Json
        );
        assert_eq!(
            DeclaredBody::of(Some(" Application/JSON ; charset=utf-8")),
            DeclaredBody::Json
        );
        assert_eq!(
            DeclaredBody::of(Some("application/merge-patch+json")),
            DeclaredBody::Json
        );
        assert_eq!(DeclaredBody::of(Some("text/plain")), DeclaredBody::Text);
        assert_eq!(
            DeclaredBody::of(Some("application/octet-stream")),
            DeclaredBody::Undeclared
        );
        assert_eq!(
            DeclaredBody::of(Some("application/jsonl")),
            DeclaredBody::Undeclared
        );
    }
}
