//! The MQTT decoder as a connection uses it (`ironhub_mqtt::read_packet`): any bytes give a
//! packet, "need more", or an error, never a panic; a decoded packet consumes exactly its own
//! bytes and encodes back to bytes that decode to the same packet, consuming all of them.
#![no_main]

use bytes::BytesMut;
use ironhub_mqtt::read_packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Every packet in the input, as a connection would read them one after another.
    while let Ok(Some(packet)) = read_packet(&mut buf) {
        let mut encoded = BytesMut::new();
        packet
            .write(&mut encoded, usize::MAX)
            .expect("a decoded packet encodes");
        let len = encoded.len();
        let again = read_packet(&mut encoded)
            .expect("an encoded packet decodes")
            .expect("an encoded packet is complete");
        assert_eq!(
            again, packet,
            "the packet changed through encode and decode"
        );
        assert!(
            encoded.is_empty(),
            "decoding {len} encoded bytes left some over"
        );
    }
});
