//! What a DPS login over AMQP proved, whichever SASL mechanism carried it (PLAIN's
//! `{idScope}/registrations/{registrationId}` user name, or the TPM exchange of `sasl_tpm.rs`).

/// What a DPS login presented: `{idScope}/registrations/{registrationId}` and a SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationLogin {
    pub scope: String,
    pub registration_id: String,
    pub token: String,
}
