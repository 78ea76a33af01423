//! The SAS token parser (`ironhub_auth::SasToken::parse`): any text parses or is refused,
//! never a panic; the fields of a parsed token, signed again with a known key, round-trip
//! through `generate` and `parse`, and the new token verifies with that key and covers its
//! resource (when it names any).
#![no_main]

use ironhub_auth::sas::{SasToken, generate, resource_covers, resource_is};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = SasToken::parse(text) else {
        return;
    };
    let resource = token.resource();
    let _ = token.check_expiry(0);
    let _ = token.verify_keys([KEY]);
    // A resource covers itself exactly when it names itself (when it has any segment).
    assert_eq!(
        resource_covers(&resource, &resource),
        resource_is(&resource, &resource)
    );
    assert_eq!(
        token.check_resource(&resource).is_ok(),
        resource_is(&resource, &resource)
    );
    let again = generate(&resource, KEY, token.expiry(), token.key_name())
        .expect("a valid key signs anything");
    let parsed = SasToken::parse(&again).expect("a generated token parses");
    assert_eq!(parsed.resource(), resource);
    assert_eq!(parsed.expiry(), token.expiry());
    assert_eq!(parsed.key_name(), token.key_name());
    parsed.verify_keys([KEY]).expect("signed with KEY");
    assert!(parsed.signed_with(KEY));
});
