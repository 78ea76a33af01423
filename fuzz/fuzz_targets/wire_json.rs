//! The JSON request bodies (`ironhub_wire`): the first byte picks a body type, the rest is its
//! JSON. Any bytes deserialise or are refused, never a panic; what deserialises serialises,
//! and that JSON deserialises again to a body that serialises to the same JSON.
#![no_main]

use ironhub_wire::{certificate, dps, hub};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) {
    let Ok(body) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let value = serde_json::to_value(&body).expect("a body serialises");
    let again: T = serde_json::from_value(value.clone()).expect("its JSON deserialises");
    let value_again = serde_json::to_value(&again).expect("a body serialises");
    assert_eq!(value_again, value, "the body changed through its JSON");
}

/// The bodies clients send, in the order the first byte picks them.
const BODIES: &[fn(&[u8])] = &[
    round_trip::<hub::DeviceSpec>,
    round_trip::<hub::TwinPatch>,
    round_trip::<hub::Twin>,
    round_trip::<hub::ExportImportDevice>,
    round_trip::<hub::MethodRequest>,
    round_trip::<hub::FileUploadRequest>,
    round_trip::<hub::FileUploadCompletion>,
    round_trip::<hub::RegenerateRequest>,
    round_trip::<hub::IssueCertificateRequest>,
    round_trip::<hub::QuerySpecification>,
    round_trip::<dps::IndividualEnrollment>,
    round_trip::<dps::EnrollmentGroup>,
    round_trip::<dps::BulkEnrollmentOperation>,
    round_trip::<dps::BulkEnrollmentGroupOperation>,
    round_trip::<dps::LinkedHubSpec>,
    round_trip::<dps::DeviceRegistration>,
    round_trip::<dps::CustomAllocationResponse>,
    round_trip::<dps::TpmChallenge>,
    round_trip::<certificate::CertificateUpload>,
    round_trip::<certificate::VerificationProof>,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    BODIES[usize::from(pick) % BODIES.len()](json);
});
