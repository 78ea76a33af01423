//! Bounded random-input tests of the parsers a device's bytes reach first (issue 15, part 6):
//! the SAS token parser, the base64 decoder, the MQTT property bag, the topic grammar and the
//! CONNECT username. Each must never panic on any input, and what the server writes must
//! parse back to what it meant.
//!
//! `cargo fuzz` needs a nightly toolchain (or `RUSTC_BOOTSTRAP=1`) and sanitizer builds of the
//! whole dependency tree, so these run inside `cargo test` instead: a small seeded generator,
//! biased towards each grammar's delimiters, mutating valid examples. A run is reproducible;
//! a longer one with another seed:
//!
//! ```sh
//! IRONHUB_RANDOM_SEED=7 IRONHUB_RANDOM_ROUNDS=2000000 cargo test -p ironhub-mqtt --test random_inputs --release
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use ironhub_auth::{SasToken, b64, resource_covers, resource_is, sas, time_left};
use ironhub_mqtt::topics::{
    Inbound, decode_property_bag, encode_property_bag, inbound, is_valid_topic_name, subscription,
};
use ironhub_mqtt::username::Username;

/// Rounds per property unless `IRONHUB_RANDOM_ROUNDS` says otherwise (a few seconds in all
/// in a debug build).
const ROUNDS: usize = 20_000;

fn rounds() -> usize {
    std::env::var("IRONHUB_RANDOM_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

/// SplitMix64: small, seeded, good enough to pick characters.
struct Gen(u64);

impl Gen {
    fn new(salt: u64) -> Gen {
        let seed = std::env::var("IRONHUB_RANDOM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x1badb002);
        Gen(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A string of up to `max` characters, mostly from `alphabet`, sometimes anything.
    fn text(&mut self, alphabet: &[char], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| match self.below(10) {
                0 => *self.pick(&['\0', '\u{7f}', 'é', '€', '😀', '\u{fffd}', ' ', '\n']),
                _ => *self.pick(alphabet),
            })
            .collect()
    }

    /// `seed` with a few random edits: characters inserted, removed or replaced.
    fn mutate(&mut self, seed: &str, alphabet: &[char]) -> String {
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..=self.below(4) {
            let at = self.below(chars.len() + 1);
            match self.below(3) {
                0 => chars.insert(at, *self.pick(alphabet)),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = *self.pick(alphabet),
                _ => chars.push(*self.pick(alphabet)),
            }
        }
        chars.into_iter().collect()
    }
}

impl Gen {
    /// One input in three made from scratch, the others a mutated seed.
    fn input(&mut self, seeds: &[&str], alphabet: &[char]) -> String {
        if self.below(3) == 0 {
            self.text(alphabet, 60)
        } else {
            let seed = *self.pick(seeds);
            self.mutate(seed, alphabet)
        }
    }
}

/// Runs `check` on `input`, naming the input when it panics.
fn no_panic<T: std::fmt::Debug>(what: &str, input: &T, check: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!("{what} panicked on {input:?}");
    }
}

const SAS_CHARS: &[char] = &[
    'S', 'a', 'r', 's', 'e', 'i', 'g', 'k', 'n', '=', '&', '%', '2', 'F', 'f', '3', 'D', 'd', '/',
    '.', '-', '+', '1', '9', '0', 'x', ':', 'A', 'Z', ' ',
];

#[test]
fn sas_tokens_never_panic_and_generated_ones_verify() {
    let key = b64::encode([7u8; 32]);
    let seeds = [
        sas::generate("myhub.example/devices/d1", &key, 1_795_310_676, None).unwrap(),
        sas::generate(
            "0ne00000000/registrations/r",
            &key,
            u64::MAX,
            Some("registration"),
        )
        .unwrap(),
        "SharedAccessSignature sr=h&sig=AA%3D%3D&se=18446744073709551615".to_owned(),
    ];
    let mut g = Gen::new(1);
    for _ in 0..rounds() {
        let token = if g.below(4) == 0 {
            format!("SharedAccessSignature {}", g.text(SAS_CHARS, 80))
        } else {
            let seed = g.pick(&seeds).clone();
            g.mutate(&seed, SAS_CHARS)
        };
        let now = g.next();
        no_panic("SasToken::parse", &token, || {
            if let Ok(t) = SasToken::parse(&token) {
                let _ = t.check_expiry(now);
                let _ = time_left(t.expiry(), now);
                let _ = t.verify_keys([key.as_str(), "not base64"]);
                let resource = t.resource();
                let _ = t.check_resource("myhub.example/devices/d1");
                let _ = resource_is(&resource, "myhub.example/devices/d1");
            }
        });
    }
    // Generated tokens, for any resource, key and expiry, parse and verify.
    for _ in 0..rounds() / 10 {
        let resource = g.text(&['h', '.', '/', 'D', 'é', '%', '&', '=', ' ', '+', '1'], 30);
        let key = b64::encode(
            (0..g.below(64) + 1)
                .map(|_| g.next() as u8)
                .collect::<Vec<_>>(),
        );
        let expiry = if g.below(3) == 0 { u64::MAX } else { g.next() };
        let token = sas::generate(&resource, &key, expiry, None).unwrap();
        let t = SasToken::parse(&token).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(t.expiry(), expiry);
        assert_eq!(t.resource(), resource, "{token}");
        t.verify_keys([key.as_str()]).unwrap();
        assert_eq!(
            resource_is(&t.resource(), &resource),
            resource_covers(&resource, &resource),
            "{resource:?}"
        );
    }
}

#[test]
fn base64_never_panics_and_round_trips() {
    let alphabet: Vec<char> = ('A'..='Z')
        .chain('a'..='z')
        .chain('0'..='9')
        .chain(['+', '/', '=', ' ', '\n', '-', '_'])
        .collect();
    let mut g = Gen::new(2);
    for _ in 0..rounds() {
        let text = g.text(&alphabet, 60);
        no_panic("b64::decode", &text, || {
            if let Ok(bytes) = b64::decode(&text) {
                // Whatever decodes, decodes again the same from its canonical form.
                assert_eq!(b64::decode(b64::encode(&bytes)).unwrap(), bytes);
            }
        });
        let bytes: Vec<u8> = (0..g.below(70)).map(|_| g.next() as u8).collect();
        assert_eq!(b64::decode(b64::encode(&bytes)).unwrap(), bytes);
    }
}

const BAG_CHARS: &[char] = &[
    'a', 'B', '$', '.', 'm', 'i', 'd', '=', '&', '%', '2', '4', 'F', 'f', 'G', '/', '+', '#', '?',
    '-', '_', '~', '0',
];

#[test]
fn property_bags_never_panic_and_round_trip() {
    let mut g = Gen::new(3);
    for _ in 0..rounds() {
        let bag = g.text(BAG_CHARS, 60);
        no_panic("decode_property_bag", &bag, || {
            let _ = decode_property_bag(&bag);
        });
        // Any pairs (non-empty names) survive encoding and decoding, in order.
        let pairs: Vec<(String, Option<String>)> = (0..g.below(5))
            .map(|_| {
                let mut k = g.text(BAG_CHARS, 8);
                if k.is_empty() {
                    k.push('k');
                }
                let v = (g.below(4) != 0).then(|| g.text(BAG_CHARS, 8));
                (k, v)
            })
            .collect();
        let encoded = encode_property_bag(pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
        assert_eq!(decode_property_bag(&encoded), pairs, "{encoded}");
        // … also as a telemetry topic, the way a device sends them.
        let topic = format!("devices/d1/messages/events/{encoded}");
        assert!(is_valid_topic_name(&topic), "{topic}");
        match inbound(&topic, "d1", None) {
            Inbound::Telemetry { properties } => assert_eq!(properties, pairs, "{topic}"),
            other => panic!("{topic}: {other:?}"),
        }
    }
}

const TOPIC_CHARS: &[char] = &[
    'd', 'e', 'v', 'i', 'c', 's', '/', '$', 'o', 't', 'h', 'u', 'b', 'w', 'n', 'P', 'A', 'T', 'C',
    'H', 'G', 'E', '?', 'r', '=', '&', '#', '+', '1', '2', '0', '%', 'm', 'g',
];

#[test]
fn topics_never_panic() {
    let seeds = [
        "devices/d1/messages/events/a=1&%24.ct=application%2Fjson",
        "devices/d1/modules/m1/messages/events/",
        "$iothub/twin/GET/?$rid=1",
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        "$iothub/methods/res/200/?$rid=3",
        "$iothub/credentials/POST/issueCertificate/?$rid=4",
        "devices/d1/messages/devicebound/#",
        "$iothub/methods/POST/#",
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
    ];
    let mut g = Gen::new(4);
    for _ in 0..rounds() {
        let topic = g.input(&seeds, TOPIC_CHARS);
        no_panic("the topic grammar", &topic, || {
            let _ = is_valid_topic_name(&topic);
            let _ = inbound(&topic, "d1", None);
            let _ = inbound(&topic, "d1", Some("m1"));
            let _ = subscription(&topic, "d1", None);
            let _ = subscription(&topic, "d1", Some("m1"));
        });
    }
}

const USER_CHARS: &[char] = &[
    'h', '.', '/', 'd', '1', '?', 'a', 'p', 'i', '-', 'v', 'e', 'r', '=', '&', ';', ':', '%', '2',
    'F', 'm', 'o', 'l',
];

#[test]
fn usernames_never_panic_and_name_the_device() {
    let seeds = [
        "myhub.example/d1/?api-version=2021-04-12",
        "myhub.example/d1/m1/?api-version=2021-04-12&model-id=dtmi:x:y;1",
        "myhub.example/d1/api-version=2019-03-31",
        "myhub.example/d1",
    ];
    let mut g = Gen::new(5);
    for _ in 0..rounds() {
        let text = g.input(&seeds, USER_CHARS);
        no_panic("Username::parse", &text, || {
            if let Some(u) = Username::parse(&text) {
                assert!(!u.device_id.is_empty());
                let _ = u.param("api-version");
            }
        });
        // A device id without the delimiters comes back exactly, in any case.
        let id: String = g
            .text(&['a', 'B', '-', '.', '_', ':', '1', '%', 'é'], 12)
            .chars()
            .filter(|c| !c.is_whitespace() && !['\0', '\u{7f}'].contains(c))
            .collect();
        if id.is_empty() {
            continue;
        }
        let u = Username::parse(&format!("h.example/{id}/?api-version=2021-04-12")).unwrap();
        assert_eq!(u.device_id, id);
        assert_eq!(u.param("API-VERSION"), Some("2021-04-12"));
    }
}
