//! MQTT 3.1.1 packets on a byte stream: reading whole packets (with the fixed-header checks
//! the codec leaves out) and writing them. The packet codec is `rumqttc`'s `mqttbytes`.

use std::net::SocketAddr;

use bytes::BytesMut;
use ironhub_hub::frame_limits::FrameLimits;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Bytes a read asks for at least, and the capacity the buffer may keep while a connection
/// waits: a buffer that grew for a burst or a large packet is let go once it is empty, so an
/// idle connection holds at most this much.
const READ_BYTES: usize = 512;
const IDLE_CAPACITY: usize = 1024;

/// The socket, with a buffer of bytes read but not yet parsed.
pub(crate) struct Conn<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    buf: BytesMut,
    /// The largest packet read (`FrameLimits::mqtt_packet_bytes`).
    max_packet: usize,
    pub(crate) peer: SocketAddr,
}

/// Why a connection's bytes are not a packet, or could not be read or written.
#[derive(Debug)]
pub enum ConnError {
    Io(std::io::Error),
    Codec(CodecError),
    /// Fixed-header flags a packet of its type may not carry.
    ReservedFlags(u8),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Codec(e) => write!(f, "{e:?}"),
            ConnError::ReservedFlags(byte1) => {
                write!(f, "reserved fixed-header flags in 0x{byte1:02X}")
            }
        }
    }
}

/// MQTT 3.1.1 §2.2.2: every packet but PUBLISH has fixed flags (0b0010 for PUBREL, SUBSCRIBE
/// and UNSUBSCRIBE, 0 otherwise), and a receiver closes the connection on any other
/// [MQTT-2.2.2-2]. The codec does not check them. (PUBLISH's QoS 3 is refused by the codec.)
fn flags_are_valid(byte1: u8) -> bool {
    let flags = byte1 & 0x0F;
    match byte1 >> 4 {
        3 => true,
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    }
}

/// Takes the first packet off `buf` as a connection reads it: the fixed-header checks the
/// codec leaves out, then the codec, with the largest packet a connection accepts by default.
/// `Ok(None)` while the packet is incomplete (nothing is consumed then).
pub fn read_packet(buf: &mut BytesMut) -> Result<Option<Packet>, ConnError> {
    read_packet_up_to(buf, FrameLimits::DEFAULT_MQTT_PACKET_BYTES)
}

/// [`read_packet`] with the largest packet `max_packet` (counted after the fixed header, as
/// the packet's remaining length): a packet declaring more is an error from its fixed header
/// on, before its body is read.
pub fn read_packet_up_to(
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Option<Packet>, ConnError> {
    if let Some(&byte1) = buf.first()
        && !flags_are_valid(byte1)
    {
        return Err(ConnError::ReservedFlags(byte1));
    }
    match Packet::read(buf, max_packet) {
        Ok(p) => Ok(Some(p)),
        Err(CodecError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(ConnError::Codec(e)),
    }
}

/// How long closing the write side may take.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    pub(crate) fn new(stream: S, peer: SocketAddr, max_packet: usize) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Conn {
            reader,
            writer,
            buf: BytesMut::new(),
            max_packet,
            peer,
        }
    }

    /// A complete packet from the buffer, if one is there.
    pub(crate) fn parse(&mut self) -> Result<Option<Packet>, ConnError> {
        read_packet_up_to(&mut self.buf, self.max_packet)
    }

    /// Reads more bytes into the buffer; `false` at end of stream or on an error. Safe to
    /// cancel: bytes read are kept.
    pub(crate) async fn fill(&mut self) -> bool {
        self.prepare_read();
        matches!(self.reader.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Reads what the socket already has, without waiting; whether anything was read.
    pub(crate) fn fill_now(&mut self) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let fill = std::pin::pin!(self.fill());
        matches!(fill.poll(&mut context), std::task::Poll::Ready(true))
    }

    /// Lets go of a large empty buffer, and makes room for a read of [`READ_BYTES`] at least.
    fn prepare_read(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_CAPACITY {
            self.buf = BytesMut::new();
        }
        self.buf.reserve(READ_BYTES);
    }

    /// Reads until a packet is complete; `None` at end of stream.
    pub(crate) async fn next_packet(&mut self) -> Result<Option<Packet>, ConnError> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(Some(p));
            }
            self.prepare_read();
            if self
                .reader
                .read_buf(&mut self.buf)
                .await
                .map_err(ConnError::Io)?
                == 0
            {
                return Ok(None);
            }
        }
    }

    /// Writes one packet and flushes.
    pub(crate) async fn send(&mut self, packet: Packet) -> Result<(), ConnError> {
        self.send_all(std::slice::from_ref(&packet)).await
    }

    /// Writes packets in order, then flushes once.
    pub(crate) async fn send_all(&mut self, packets: &[Packet]) -> Result<(), ConnError> {
        if packets.is_empty() {
            return Ok(());
        }
        let mut out = BytesMut::with_capacity(packets.iter().map(|p| p.size() + 8).sum());
        for packet in packets {
            packet
                .write(&mut out, usize::MAX)
                .map_err(ConnError::Codec)?;
        }
        self.writer.write_all(&out).await.map_err(ConnError::Io)?;
        self.writer.flush().await.map_err(ConnError::Io)
    }

    /// Closes the write side (a TLS close_notify, then FIN), bounded: the server ends the
    /// connection (a drain) and the client sees it closed.
    pub(crate) async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.writer.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnError, flags_are_valid, read_packet, read_packet_up_to};
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Packet, PubAck};

    #[test]
    fn packets_are_read_one_at_a_time_and_only_when_complete() {
        // A PUBACK, a PINGREQ, and the first byte of a DISCONNECT.
        let mut buf = BytesMut::from(&[0x40, 0x02, 0x00, 0x05, 0xC0, 0x00, 0xE0][..]);
        let mut half = BytesMut::from(&[0x40, 0x02, 0x00][..]);
        assert!(matches!(read_packet(&mut half), Ok(None)));
        assert_eq!(half.len(), 3, "nothing is consumed while incomplete");
        assert_eq!(
            read_packet(&mut buf).unwrap(),
            Some(Packet::PubAck(PubAck::new(5)))
        );
        assert_eq!(read_packet(&mut buf).unwrap(), Some(Packet::PingReq));
        assert!(matches!(read_packet(&mut buf), Ok(None)));
        assert!(matches!(
            read_packet(&mut BytesMut::from(&[0x80, 0x00][..])),
            Err(ConnError::ReservedFlags(0x80))
        ));
    }

    #[test]
    fn a_packet_over_the_configured_limit_is_refused_from_its_header() {
        // A PUBLISH declaring 2,000 bytes, of which only the fixed header and topic are here.
        let mut head = BytesMut::from(&[0x30, 0xD0, 0x0F, 0x00, 0x01, b't'][..]);
        assert!(
            matches!(read_packet(&mut head.clone()), Ok(None)),
            "under the default"
        );
        assert!(matches!(
            read_packet_up_to(&mut head, 1024),
            Err(ConnError::Codec(_))
        ));
        // The limit counts the packet after its fixed header: at the limit it is read.
        let mut at = BytesMut::from(&[0x30, 0x04, 0x00, 0x01, b't', b'x'][..]);
        assert!(matches!(
            read_packet_up_to(&mut at.clone(), 3),
            Err(ConnError::Codec(_))
        ));
        assert!(matches!(
            read_packet_up_to(&mut at, 4),
            Ok(Some(Packet::Publish(_)))
        ));
    }

    #[test]
    fn fixed_header_flags_are_checked_for_every_packet_type() {
        // CONNECT, PUBACK, PINGREQ, DISCONNECT: flags 0.
        for ok in [0x10, 0x40, 0xC0, 0xE0, 0x62, 0x82, 0xA2, 0x30, 0x3B] {
            assert!(flags_are_valid(ok), "0x{ok:02X}");
        }
        // SUBSCRIBE without its 0b0010, PUBREL with 0, PINGREQ and CONNECT with a bit set.
        for bad in [0x80, 0x83, 0x60, 0xA0, 0xC1, 0x11, 0x48, 0xE2] {
            assert!(!flags_are_valid(bad), "0x{bad:02X}");
        }
    }
}
