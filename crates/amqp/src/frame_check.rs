//! A check of what a client sends, ahead of fe2o3-amqp's decoder, for inputs that decoder
//! cannot be trusted with (both found by the `amqp_connection` fuzz target):
//! - a frame of size 4 to 7: AMQP 1.0 (part 2, 2.3.1) requires at least 8, the frame's own
//!   header; fe2o3-amqp 0.17 reads the 4 header bytes after the size without checking that
//!   they arrived, and panics;
//! - a declared length larger than the bytes that follow it: serde_amqp 0.17 and 0.18 allocate
//!   the declared length before reading (`Read::read_bytes`, `IoReader::fill_buffer`), so a
//!   31-byte frame that declares a 3.9 GB string takes 3.9 GB. Performatives are decoded that
//!   way, and so is a message that came in several transfer frames.
//!
//! This reader follows the client's byte stream (protocol headers and frames, SASL's and
//! AMQP's), keeps each frame until its last byte, and walks its performative's encoding: every
//! size it declares must fit in what encloses it, nesting is bounded (the decoder recurses),
//! and an array's element count is bounded by its size. Transfers' payloads are kept per link
//! until their delivery's last frame and walked the same way (what fe2o3-amqp decodes them
//! from). The read that completes a frame that fails fails instead, with what was wrong, so the
//! connection ends as on any other framing error. Nothing is decoded here: the walk only
//! reads sizes and counts (AMQP 1.0 part 1, 1.6: a constructor's high nibble gives its width).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A frame's header: size (4), data offset, type and channel (4).
const FRAME_HEADER: usize = 8;
/// A protocol header (`AMQP` and 4 bytes of protocol id and version).
const PROTOCOL_HEADER: u64 = 8;
/// The largest frame kept for its check; fe2o3-amqp advertises and enforces 256 KiB.
const MAX_FRAME: usize = 1 << 20;
/// The deepest nesting of described values, lists, maps and arrays a client may send.
const MAX_DEPTH: usize = 32;

type Walk = Result<usize, &'static str>;

const TRUNCATED: &str = "a declared size runs past what encloses it";
const TOO_DEEP: &str = "values nested too deep";

/// The position `n` bytes after `pos`, if `b` holds them.
fn skip(b: &[u8], pos: usize, n: usize) -> Walk {
    pos.checked_add(n)
        .filter(|&end| end <= b.len())
        .ok_or(TRUNCATED)
}

fn byte_at(b: &[u8], pos: usize) -> Result<u8, &'static str> {
    b.get(pos).copied().ok_or(TRUNCATED)
}

fn u32_at(b: &[u8], pos: usize) -> Result<usize, &'static str> {
    let bytes = b.get(pos..pos + 4).ok_or(TRUNCATED)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
}

/// Walks the encoded value at `b[pos..]` (constructor included); the position after it.
fn value(b: &[u8], pos: usize, depth: usize) -> Walk {
    let code = byte_at(b, pos)?;
    if code == 0x00 {
        // A described value: descriptor, then the value.
        if depth >= MAX_DEPTH {
            return Err(TOO_DEEP);
        }
        let after = value(b, pos + 1, depth + 1)?;
        return value(b, after, depth + 1);
    }
    encoding(b, pos + 1, code, depth)
}

/// Walks the encoding that follows constructor `code` at `b[pos..]`.
fn encoding(b: &[u8], pos: usize, code: u8, depth: usize) -> Walk {
    match code >> 4 {
        0x4 => Ok(pos),
        0x5 => skip(b, pos, 1),
        0x6 => skip(b, pos, 2),
        0x7 => skip(b, pos, 4),
        0x8 => skip(b, pos, 8),
        0x9 => skip(b, pos, 16),
        0xa => skip(b, pos + 1, usize::from(byte_at(b, pos)?)),
        0xb => skip(b, pos + 4, u32_at(b, pos)?),
        0xc..=0xf => compound(b, pos, code, depth),
        _ => Err("an unknown constructor"),
    }
}

/// A list, map (0xc, 0xd) or array (0xe, 0xf): size, count, then the items.
fn compound(b: &[u8], pos: usize, code: u8, depth: usize) -> Walk {
    if depth >= MAX_DEPTH {
        return Err(TOO_DEEP);
    }
    let wide = matches!(code >> 4, 0xd | 0xf);
    let (size, count, start) = if wide {
        (u32_at(b, pos)?, u32_at(b, pos + 4)?, pos + 8)
    } else {
        let size = usize::from(byte_at(b, pos)?);
        let count = usize::from(byte_at(b, pos + 1)?);
        (size, count, pos + 2)
    };
    let width = if wide { 4 } else { 1 };
    // The size counts the count field and the items; nothing inside may run past it.
    let end = skip(b, pos + width, size)?;
    if size < width {
        return Err(TRUNCATED);
    }
    let inside = &b[..end];
    let mut at = start;
    if code >> 4 >= 0xe {
        // One constructor (perhaps described) for every element.
        let mut element = byte_at(inside, at)?;
        at += 1;
        if element == 0x00 {
            at = value(inside, at, depth + 1)?;
            element = byte_at(inside, at)?;
            at += 1;
        }
        // Zero-width elements take no bytes: their count is bounded by the array's size.
        if element == 0x00 || count > size {
            return Err("an array's elements do not fit its size");
        }
        for _ in 0..count {
            at = encoding(inside, at, element, depth + 1)?;
        }
    } else {
        for _ in 0..count {
            at = value(inside, at, depth + 1)?;
        }
    }
    Ok(end)
}

/// The descriptor code of the performative at `b[0..]`, and where its list starts.
fn performative(b: &[u8]) -> Option<(u64, usize)> {
    if *b.first()? != 0x00 {
        return None;
    }
    match *b.get(1)? {
        0x44 => Some((0, 2)),
        0x53 => Some((u64::from(*b.get(2)?), 3)),
        0x80 => Some((u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10)),
        0xa3 => {
            let len = usize::from(*b.get(2)?);
            let name = b.get(3..3 + len)?;
            let code = match name {
                b"amqp:transfer:list" => 0x14,
                b"amqp:detach:list" => 0x16,
                b"amqp:end:list" => 0x17,
                _ => return None,
            };
            Some((code, 3 + len))
        }
        _ => None,
    }
}

/// The encoded fields of the (already walked) list at `b[pos..]`.
fn fields(b: &[u8], pos: usize) -> Vec<&[u8]> {
    let (count, mut at) = match b.get(pos) {
        Some(0xc0) => (b.get(pos + 2).map_or(0, |&c| usize::from(c)), pos + 3),
        Some(0xd0) => (u32_at(b, pos + 5).unwrap_or(0), pos + 9),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for _ in 0..count {
        let Ok(next) = value(b, at, 0) else { break };
        out.push(&b[at..next]);
        at = next;
    }
    out
}

fn uint(field: Option<&&[u8]>) -> Option<u32> {
    match field? {
        [0x43] => Some(0),
        [0x52, n] => Some(u32::from(*n)),
        [0x70, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn boolean(field: Option<&&[u8]>) -> bool {
    matches!(field, Some([0x41]) | Some([0x56, 1]))
}

/// Where the reader is in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a frame or protocol header, `have` of its first 4 bytes read.
    Start { first: [u8; 4], have: usize },
    /// Inside a protocol header, this many bytes of it still to come.
    Header(u64),
    /// Inside a frame of this size, kept in `FrameCheck::frame`.
    Frame(usize),
}

const START: At = At::Start {
    first: [0; 4],
    have: 0,
};

impl Default for At {
    fn default() -> Self {
        START
    }
}

/// The checks' state over one connection.
#[derive(Debug, Default)]
struct Checker {
    at: At,
    /// The frame being read, from its size on.
    frame: Vec<u8>,
    /// The payloads of deliveries that came in several frames so far, by channel and handle.
    deliveries: HashMap<(u16, u32), Vec<u8>>,
    /// Their bytes in all.
    pending: usize,
    /// The most `pending` may reach.
    max_pending: usize,
}

impl Checker {
    fn new(max_pending: usize) -> Self {
        Checker {
            max_pending,
            ..Default::default()
        }
    }

    /// Follows `bytes`, checking each frame they complete.
    fn follow(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            self.at = match self.at {
                At::Start {
                    mut first,
                    mut have,
                } => {
                    let take = (4 - have).min(bytes.len());
                    first[have..have + take].copy_from_slice(&bytes[..take]);
                    have += take;
                    bytes = &bytes[take..];
                    if have < 4 {
                        At::Start { first, have }
                    } else if &first == b"AMQP" {
                        // A protocol header (the SASL layer's, then AMQP's); a frame this size
                        // (about 1.1 GB) is past any the endpoint accepts.
                        At::Header(PROTOCOL_HEADER - 4)
                    } else {
                        let size = u32::from_be_bytes(first) as usize;
                        if size < FRAME_HEADER {
                            return Err(format!(
                                "an AMQP frame of size {size}, shorter than a frame's header ({FRAME_HEADER})"
                            ));
                        }
                        if size > MAX_FRAME {
                            return Err(format!(
                                "an AMQP frame of size {size}, larger than any this endpoint accepts"
                            ));
                        }
                        self.frame.clear();
                        self.frame.extend_from_slice(&first);
                        At::Frame(size)
                    }
                }
                At::Header(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    if take == left {
                        START
                    } else {
                        At::Header(left - take)
                    }
                }
                At::Frame(size) => {
                    let take = (size - self.frame.len()).min(bytes.len());
                    self.frame.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.frame.len() < size {
                        At::Frame(size)
                    } else {
                        let frame = std::mem::take(&mut self.frame);
                        let checked = self.frame_done(&frame);
                        self.frame = frame;
                        checked?;
                        START
                    }
                }
            };
        }
        Ok(())
    }

    /// Checks a whole frame (`frame[0..4]` is its size).
    fn frame_done(&mut self, frame: &[u8]) -> Result<(), String> {
        let offset = usize::from(frame[4]) * 4;
        let (kind, channel) = (frame[5], u16::from_be_bytes([frame[6], frame[7]]));
        if offset < FRAME_HEADER || offset > frame.len() {
            return Err(format!("an AMQP frame with data offset {}", frame[4]));
        }
        let body = &frame[offset..];
        if body.is_empty() {
            return Ok(()); // an empty frame: a heartbeat
        }
        let end = value(body, 0, 0).map_err(|why| format!("a malformed AMQP frame: {why}"))?;
        if kind != 0 {
            return Ok(()); // SASL: its frame is its performative
        }
        let Some((code, list)) = performative(&body[..end]) else {
            return Ok(());
        };
        let fields = fields(body, list);
        match code {
            0x14 => {
                let Some(handle) = uint(fields.first()) else {
                    return Ok(()); // no handle: fe2o3-amqp refuses the transfer itself
                };
                let (more, aborted) = (boolean(fields.get(5)), boolean(fields.get(9)));
                self.transfer((channel, handle), &body[end..], more, aborted)
            }
            0x16 => {
                if let Some(handle) = uint(fields.first()) {
                    self.forget(|key| key == (channel, handle));
                }
                Ok(())
            }
            0x17 => {
                self.forget(|key| key.0 == channel);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A transfer's payload: kept while its delivery has more to come, walked once it is whole.
    fn transfer(
        &mut self,
        key: (u16, u32),
        payload: &[u8],
        more: bool,
        aborted: bool,
    ) -> Result<(), String> {
        if aborted {
            self.forget(|k| k == key);
            return Ok(());
        }
        let whole = match (self.deliveries.remove(&key), more) {
            (None, false) => return sections(payload),
            (None, true) => {
                self.pending += payload.len();
                self.deliveries.insert(key, payload.to_vec());
                None
            }
            (Some(mut kept), more) => {
                self.pending += payload.len();
                kept.extend_from_slice(payload);
                if more {
                    self.deliveries.insert(key, kept);
                    None
                } else {
                    self.pending -= kept.len();
                    Some(kept)
                }
            }
        };
        if self.pending > self.max_pending {
            return Err(format!(
                "AMQP deliveries in progress of {} bytes, more than this endpoint keeps",
                self.pending
            ));
        }
        whole.map_or(Ok(()), |whole| sections(&whole))
    }

    fn forget(&mut self, which: impl Fn((u16, u32)) -> bool) {
        let pending = &mut self.pending;
        self.deliveries.retain(|&key, kept| {
            let keep = !which(key);
            if !keep {
                *pending -= kept.len();
            }
            keep
        });
    }
}

/// A message's sections, one encoded value after another.
fn sections(payload: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while at < payload.len() {
        at = value(payload, at, 0).map_err(|why| format!("a malformed AMQP message: {why}"))?;
    }
    Ok(())
}

/// `inner`, whose reads fail from the first malformed frame on.
#[derive(Debug)]
pub struct FrameCheck<Io> {
    inner: Io,
    peer: SocketAddr,
    checker: Checker,
    /// What was wrong, once something was.
    failed: Option<String>,
}

impl<Io> FrameCheck<Io> {
    /// `max_message` is the largest message a link takes: the deliveries in progress may hold
    /// twice that, and a frame, before the connection is closed (a link refuses a message that
    /// is too large by itself, while its last frames may still be on their way).
    pub fn new(inner: Io, peer: SocketAddr, max_message: u64) -> Self {
        let max_pending = usize::try_from(max_message)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .saturating_add(MAX_FRAME);
        FrameCheck {
            inner,
            peer,
            checker: Checker::new(max_pending),
            failed: None,
        }
    }
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

impl<Io: AsyncRead + Unpin> AsyncRead for FrameCheck<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(why) = &self.failed {
            return Poll::Ready(Err(refused(why)));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        match this.checker.follow(&buf.filled()[before..]) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(why) => {
                // The frame's earlier bytes reached the decoder, but not its last: it is
                // never decoded.
                buf.set_filled(before);
                tracing::info!(peer = %this.peer, error = %why, "AMQP connection closed: a malformed frame");
                let error = refused(&why);
                this.failed = Some(why);
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for FrameCheck<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use fe2o3_amqp::types::messaging::{ApplicationProperties, Message, Properties};
    use fe2o3_amqp::types::primitives::{Binary, SimpleValue};
    use serde_amqp::to_vec;
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A frame of type `kind` on channel 0 around `body`.
    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&[2, kind, 0, 0]);
        out.extend_from_slice(body);
        out
    }

    /// A transfer performative on handle 1 (described by code), `more` as given.
    fn transfer(more: bool) -> Vec<u8> {
        // handle 1, delivery-id 0, delivery-tag "t", message-format 0, settled false, more
        let mut list = vec![0x52, 1, 0x43, 0xa0, 1, b't', 0x43, 0x42];
        list.push(if more { 0x41 } else { 0x42 });
        let mut out = vec![0x00, 0x53, 0x14, 0xc0, (list.len() + 1) as u8, 6];
        out.extend_from_slice(&list);
        out
    }

    fn message() -> Vec<u8> {
        let mut properties = ApplicationProperties::default();
        properties.insert("color".into(), SimpleValue::String("red".into()));
        let message = Message::builder()
            .properties(Properties::builder().message_id(7u64).build())
            .application_properties(properties)
            .data(Binary::from(vec![7u8; 300]))
            .build();
        to_vec(&fe2o3_amqp::types::messaging::message::__private::Serializable(message)).unwrap()
    }

    /// A SASL header, a heartbeat, a SASL init, then AMQP's header and a one-frame transfer.
    fn good() -> Vec<u8> {
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 8, 2, 1, 0, 0]);
        bytes.extend(frame(
            1,
            &[
                0x00, 0x53, 0x41, 0xc0, 0x0b, 0x01, 0xa3, 0x08, b'A', b'N', b'O', b'N', b'Y', b'M',
                b'O', b'U',
            ],
        ));
        bytes.extend_from_slice(b"AMQP\x00\x01\x00\x00");
        let mut body = transfer(false);
        body.extend(message());
        bytes.extend(frame(0, &body));
        bytes
    }

    /// `payload` as a delivery of two transfer frames, split at `at`.
    fn two_frames(payload: &[u8], at: usize) -> (Vec<u8>, Vec<u8>) {
        let (head, tail) = payload.split_at(at);
        let mut first = transfer(true);
        first.extend_from_slice(head);
        let mut second = transfer(false);
        second.extend_from_slice(tail);
        (frame(0, &first), frame(0, &second))
    }

    fn check(bytes: &[u8]) -> Result<(), String> {
        Checker::new(1 << 20).follow(bytes)
    }

    #[test]
    fn real_frames_pass_in_any_pieces() {
        let bytes = good();
        check(&bytes).unwrap();
        for split in 0..bytes.len() {
            let mut checker = Checker::new(1 << 20);
            checker.follow(&bytes[..split]).unwrap();
            checker.follow(&bytes[split..]).unwrap();
            assert_eq!(checker.at, START, "split at {split}");
        }
    }

    #[test]
    fn a_frame_shorter_than_its_header_is_refused() {
        for size in 0..8u8 {
            let mut bytes = good();
            bytes.extend_from_slice(&[0, 0, 0, size, 2, 0, 0]);
            let why = check(&bytes).unwrap_err();
            assert!(why.contains(&format!("size {size},")), "{why}");
        }
    }

    #[test]
    fn a_declared_length_past_the_frame_is_refused() {
        // An attach-like list holding a str32 that claims 3.9 GB.
        let body = [
            0x00, 0x53, 0x12, 0xc0, 0x07, 0x01, 0xb1, 0xe5, 0xff, 0xfe, 0xff, 0x00,
        ];
        let why = check(&[b"AMQP\x00\x01\x00\x00".to_vec(), frame(0, &body)].concat()).unwrap_err();
        assert!(why.contains("runs past"), "{why}");
        // The same inside a message's application properties, in one frame and in two.
        let mut bad = message();
        let at = bad.windows(2).position(|w| w == [0xa1, 3]).unwrap(); // "red"'s str8
        bad[at] = 0xb1;
        let mut one = transfer(false);
        one.extend_from_slice(&bad);
        assert!(check(&[b"AMQP\x00\x01\x00\x00".to_vec(), frame(0, &one)].concat()).is_err());
        let (first, second) = two_frames(&bad, bad.len() / 2);
        let mut checker = Checker::new(1 << 20);
        checker
            .follow(&[b"AMQP\x00\x01\x00\x00".to_vec(), first].concat())
            .unwrap();
        assert!(checker.follow(&second).is_err());
    }

    #[test]
    fn a_message_in_two_frames_passes_and_is_not_kept() {
        let (first, second) = two_frames(&message(), 100);
        let mut checker = Checker::new(1 << 20);
        checker
            .follow(&[b"AMQP\x00\x01\x00\x00".to_vec(), first, second].concat())
            .unwrap();
        assert!(checker.deliveries.is_empty());
        assert_eq!(checker.pending, 0);
    }

    #[test]
    fn deliveries_in_progress_are_bounded() {
        let mut checker = Checker::new(1000);
        checker.follow(b"AMQP\x00\x01\x00\x00").unwrap();
        let mut first = transfer(true);
        first.extend_from_slice(&[0x40; 600]);
        checker.follow(&frame(0, &first)).unwrap();
        let why = checker.follow(&frame(0, &first)).unwrap_err();
        assert!(why.contains("in progress"), "{why}");
    }

    #[test]
    fn nesting_and_arrays_are_bounded() {
        // 40 nested list8s.
        let mut nested = vec![0x45];
        for _ in 0..40 {
            let mut outer = vec![0xc0, (nested.len() + 1) as u8, 1];
            outer.extend(nested);
            nested = outer;
        }
        let mut body = vec![0x00, 0x53, 0x10];
        body.extend(&nested[..]);
        let why = check(&[b"AMQP\x00\x01\x00\x00".to_vec(), frame(0, &body)].concat()).unwrap_err();
        assert!(why.contains("too deep"), "{why}");
        // An array32 of a billion nulls in 9 bytes.
        let body = [0x00, 0x53, 0x10, 0xf0, 0, 0, 0, 5, 0x40, 0, 0, 0, 0x40];
        let why = check(&[b"AMQP\x00\x01\x00\x00".to_vec(), frame(0, &body)].concat()).unwrap_err();
        assert!(why.contains("array"), "{why}");
    }

    #[tokio::test]
    async fn the_read_that_completes_a_bad_frame_fails_and_so_do_later_ones() {
        let mut bytes = good();
        bytes.extend_from_slice(&[0, 0, 0, 5, 2]);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut reader = FrameCheck::new(&bytes[..], peer, 1 << 20);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("size 5"), "{err}");
        let mut more = [0u8; 4];
        assert!(reader.read(&mut more).await.is_err());
    }
}
