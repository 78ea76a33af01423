//! A response body read as lines, as they arrive: hyper's body frames are buffered and cut at
//! each `\n`, so a caller sees every line as soon as its last byte comes in, however the
//! server split the body into chunks.

use bytes::BytesMut;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::ClientError;
use crate::tls;

/// The longest line accepted (an event line holds at most a 256 KiB message, base64-encoded,
/// with its properties).
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// The lines of a streaming response body (e.g. NDJSON), read one at a time.
pub struct LineStream {
    host: String,
    body: Option<Incoming>,
    lines: LineBuffer,
}

impl std::fmt::Debug for LineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineStream")
            .field("host", &self.host)
            .field("ended", &self.body.is_none())
            .finish_non_exhaustive()
    }
}

impl LineStream {
    pub(crate) fn new(host: String, body: Incoming) -> LineStream {
        LineStream {
            host,
            body: Some(body),
            lines: LineBuffer::default(),
        }
    }

    /// The next non-empty line, without its `\n` or `\r\n`, waiting as long as it takes;
    /// `None` once the server has ended the response (a last line without `\n` is still
    /// returned). Cancel-safe: dropping the future (e.g. on a timeout) loses no data.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(line) = self.lines.take_line()? {
                return Ok(Some(line));
            }
            let Some(body) = self.body.as_mut() else {
                return self.lines.finish();
            };
            match body.frame().await {
                None => self.body = None,
                Some(Err(e)) => {
                    self.body = None;
                    return Err(tls::classify(&self.host, &e));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = self.lines.push(&data)
                    {
                        self.body = None;
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Bytes in, complete lines out.
#[derive(Debug, Default)]
struct LineBuffer {
    buffer: BytesMut,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() > MAX_LINE_BYTES && !self.buffer.contains(&b'\n') {
            return Err(invalid(format!(
                "a line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// Cuts the first complete non-empty line off the buffer.
    fn take_line(&mut self) -> Result<Option<String>, ClientError> {
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let line = text(&line[..end])?.trim_end_matches('\r');
            if !line.is_empty() {
                return Ok(Some(line.to_owned()));
            }
        }
        Ok(None)
    }

    /// The body has ended: what is left, if it is a line.
    fn finish(&mut self) -> Result<Option<String>, ClientError> {
        let rest = self.buffer.split();
        let line = text(&rest)?.trim_end_matches(['\r', '\n']);
        Ok((!line.is_empty()).then(|| line.to_owned()))
    }
}

fn text(bytes: &[u8]) -> Result<&str, ClientError> {
    std::str::from_utf8(bytes).map_err(|e| invalid(format!("a line that is not UTF-8: {e}")))
}

fn invalid(detail: String) -> ClientError {
    ClientError::InvalidResponse {
        status: 200,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_wherever_the_chunks_end() {
        let mut b = LineBuffer::default();
        b.push(b"{\"a\":").unwrap();
        assert_eq!(b.take_line().unwrap(), None);
        b.push(b"1}\n{\"b\":2}\r\n\n{\"c\"").unwrap();
        assert_eq!(b.take_line().unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(b.take_line().unwrap().as_deref(), Some("{\"b\":2}"));
        assert_eq!(b.take_line().unwrap(), None);
        b.push(b":3}").unwrap();
        assert_eq!(b.finish().unwrap().as_deref(), Some("{\"c\":3}"));
        assert_eq!(b.finish().unwrap(), None);
    }

    #[test]
    fn bad_lines_are_errors() {
        let mut b = LineBuffer::default();
        b.push(&[0xff, b'\n']).unwrap();
        assert!(b.take_line().unwrap_err().to_string().contains("not UTF-8"));
        let mut b = LineBuffer::default();
        let e = b.push(&vec![b'x'; MAX_LINE_BYTES + 1]).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }
}
