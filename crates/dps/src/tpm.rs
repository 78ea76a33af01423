//! TPM attestation: the server's half of the challenge DPS gives a TPM device.
//!
//! The device sends its endorsement key (EK) and storage root key (SRK) as marshalled
//! `TPM2B_PUBLIC`s. DPS answers with an `authenticationKey` that only that TPM can open:
//!
//! ```text
//! TPM2B_ID_OBJECT credentialBlob ‖ TPM2B_ENCRYPTED_SECRET secret       (MakeCredential to the EK)
//! ‖ TPM2B_PRIVATE duplicate ‖ TPM2B_ENCRYPTED_SECRET inSymSeed          (the HMAC key, duplicated to the SRK)
//! ‖ TPM2B_PUBLIC keyPublic ‖ UINT16 0                                  (the key's public area; no extra data)
//! ```
//!
//! which is the order the Azure IoT C SDK (Azure/azure-iot-sdk-c:
//! `provisioning_client/adapters/hsm_client_tpm.c`, `insert_key_in_tpm`) and the IoT Edge
//! identity service (Azure/iot-identity-service: `tpm/aziot-tpmd/src/lib.rs`,
//! `import_auth_key`) unmarshal it in; `docs/protocol/tpm.md` describes the exchange. The
//! credential is the 16-byte AES key of the duplicate's inner wrapper and is bound to the
//! SRK's name: the device runs `TPM2_ActivateCredential(SRK, EK)` to get it, then
//! `TPM2_Import` under the SRK with it, and signs its SAS tokens with the imported HMAC key.
//!
//! The constructions are those of the TPM 2.0 Library specification, Part 1
//! ("Architecture"), cited by clause title (`docs/protocol/tpm.md`, "The server's
//! cryptography"): KDFa ("Key Derivation Function"), object names ("Names"), the clauses on
//! protected storage and duplication (inner and outer wrappers, the `"STORAGE"` and
//! `"INTEGRITY"` keys, seeds sent with RSA-OAEP and the label `"DUPLICATE"`), and
//! "Credential Protection" (the label `"IDENTITY"`). The primitives are RustCrypto's (`rsa`
//! OAEP, `aes` in CFB mode) and ring's (SHA-256, HMAC-SHA-256).
//!
//! Only RSA EKs and SRKs with SHA-256 names and AES-CFB symmetric parameters (the templates
//! of the TCG EK profile and of every SRK the SDKs create) are supported; an ECC EK is
//! refused with a clear 400.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use ring::{digest, hmac};
use rsa::{BigUint, Oaep, RsaPublicKey};

use crate::DpsError;

const TPM_ALG_RSA: u16 = 0x0001;
const TPM_ALG_KEYEDHASH: u16 = 0x0008;
const TPM_ALG_HMAC: u16 = 0x0005;
const TPM_ALG_AES: u16 = 0x0006;
const TPM_ALG_SHA256: u16 = 0x000B;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_CFB: u16 = 0x0043;
const TPM_ALG_ECC: u16 = 0x0023;
/// `TPMA_OBJECT.decrypt`.
const ATTR_DECRYPT: u32 = 1 << 17;
/// `TPMA_OBJECT.userWithAuth | TPMA_OBJECT.sign`: a duplicable HMAC key used with an empty
/// password.
const HMAC_KEY_ATTRIBUTES: u32 = (1 << 6) | (1 << 18);
/// The size of a SHA-256 digest, and so of every seed here.
const DIGEST_LEN: usize = 32;
/// The inner wrapper's key: AES-128, as the device's `TPM2_Import` call names it.
const INNER_KEY_LEN: usize = 16;

fn bad(what: &str, why: impl std::fmt::Display) -> DpsError {
    DpsError::BadRequest(format!("The TPM {what} is not valid: {why}."))
}

/// An RSA storage key of the device's TPM (its EK or SRK), read from its `TPM2B_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// The marshalled `TPMT_PUBLIC` (what the name is computed over).
    area: Vec<u8>,
    /// The AES key size of the key's symmetric parameters, in bytes.
    sym_key_len: usize,
    key: RsaPublicKey,
}

/// Reads big-endian TPM structures.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends too early".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `TPM2B`: a 16-bit size and that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

impl TpmPublic {
    /// Parses a key as the device sends it: base64 of a marshalled `TPM2B_PUBLIC` (a bare
    /// `TPMT_PUBLIC` is taken too). `what` names the key in errors.
    pub fn from_base64(text: &str, what: &str) -> Result<Self, DpsError> {
        let bytes = ironhub_auth::b64::decode(text).map_err(|e| bad(what, e))?;
        Self::from_bytes(&bytes).map_err(|e| bad(what, e))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let area = match bytes {
            [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
                rest
            }
            _ => bytes,
        };
        let mut r = Reader(area);
        let kind = r.u16()?;
        if kind == TPM_ALG_ECC {
            return Err("it is an ECC key, and only RSA TPM keys are supported".into());
        }
        if kind != TPM_ALG_RSA {
            return Err(format!("its type 0x{kind:04x} is not RSA"));
        }
        let name_alg = r.u16()?;
        if name_alg != TPM_ALG_SHA256 {
            return Err(format!(
                "its name algorithm 0x{name_alg:04x} is not SHA-256"
            ));
        }
        let attributes = r.u32()?;
        if attributes & ATTR_DECRYPT == 0 {
            return Err("it is not a decryption (storage) key".into());
        }
        r.sized()?; // authPolicy
        let (sym_alg, sym_bits, sym_mode) = match r.u16()? {
            TPM_ALG_NULL => (TPM_ALG_NULL, 0, TPM_ALG_NULL),
            alg => (alg, r.u16()?, r.u16()?),
        };
        if sym_alg != TPM_ALG_AES || sym_mode != TPM_ALG_CFB || !matches!(sym_bits, 128 | 256) {
            return Err("its symmetric algorithm is not AES-128 or AES-256 in CFB mode".into());
        }
        if r.u16()? != TPM_ALG_NULL {
            r.u16()?; // the scheme's hash
        }
        let _key_bits = r.u16()?;
        let exponent = match r.u32()? {
            0 => 65_537,
            e => e,
        };
        let modulus = r.sized()?;
        if !r.0.is_empty() {
            return Err("it has bytes after the public area".into());
        }
        let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
            .map_err(|e| e.to_string())?;
        Ok(TpmPublic {
            area: area.to_vec(),
            sym_key_len: usize::from(sym_bits / 8),
            key,
        })
    }

    /// The key's TPM name: `TPM_ALG_SHA256 ‖ SHA-256(TPMT_PUBLIC)` (Part 1, "Names").
    pub fn name(&self) -> Vec<u8> {
        name_of(&self.area)
    }

    /// The marshalled `TPMT_PUBLIC` as the device sent it.
    pub fn area(&self) -> &[u8] {
        &self.area
    }

    /// A fresh seed and its RSA-OAEP (SHA-256) encryption to this key under `label` (the
    /// label is the ASCII string with its terminating zero, as Part 1's secret sharing
    /// annex gives it).
    fn seal_seed(&self, label: &str) -> Result<(Vec<u8>, Vec<u8>), DpsError> {
        let seed = ironhub_auth::random_bytes(DIGEST_LEN);
        let padding = Oaep::new_with_label::<sha2::Sha256, _>(format!("{label}\0"));
        let sealed = self
            .key
            .encrypt(&mut rand_core::OsRng, padding, &seed)
            .map_err(|e| DpsError::ServerError(format!("RSA-OAEP failed: {e}")))?;
        Ok((seed, sealed))
    }
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

fn name_of(area: &[u8]) -> Vec<u8> {
    let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
    name.extend(sha256(&[area]));
    name
}

/// KDFa with HMAC-SHA-256 (TPM 2.0 Part 1, "Key Derivation Function"): `bytes` bytes of
/// `HMAC(key, [i]₃₂ ‖ label ‖ 00 ‖ contextU ‖ contextV ‖ [bits]₃₂)` for i = 1, 2, …
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bytes: usize) -> Vec<u8> {
    let bits = u32::try_from(bytes * 8).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(bytes + DIGEST_LEN);
    let mut counter: u32 = 0;
    while out.len() < bytes {
        counter += 1;
        out.extend(hmac_sha256(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context_u,
                context_v,
                &bits,
            ],
        ));
    }
    out.truncate(bytes);
    out
}

/// AES-CFB with a zero IV (how TPM wrappers encrypt); `key` is 16 or 32 bytes.
fn aes_cfb(key: &[u8], data: &[u8]) -> Result<Vec<u8>, DpsError> {
    let iv = [0u8; 16];
    let mut buf = data.to_vec();
    let wrong = |_| DpsError::ServerError("AES key of the wrong size".into());
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(wrong)?
            .encrypt(&mut buf),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(wrong)?
            .encrypt(&mut buf),
        _ => return Err(DpsError::ServerError("AES key of the wrong size".into())),
    }
    Ok(buf)
}

/// `TPM2B`: a 16-bit size, then the bytes.
fn sized(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// The outer wrapper both MakeCredential and duplication put around `plain` (Part 1's
/// protected storage and credential protection clauses): a seed sealed to `to` under
/// `label`, `plain` encrypted with KDFa(seed, "STORAGE", `name`) and an HMAC with
/// KDFa(seed, "INTEGRITY") over the result and `name`. Returns the wrapped blob
/// (`TPM2B_DIGEST hmac ‖ encrypted`) and the sealed seed.
fn outer_wrap(
    to: &TpmPublic,
    label: &str,
    name: &[u8],
    plain: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), DpsError> {
    let (seed, sealed) = to.seal_seed(label)?;
    let sym_key = kdfa(&seed, "STORAGE", name, &[], to.sym_key_len);
    let encrypted = aes_cfb(&sym_key, plain)?;
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], DIGEST_LEN);
    let integrity = hmac_sha256(&hmac_key, &[&encrypted, name]);
    let mut blob = sized(&integrity);
    blob.extend(encrypted);
    Ok((blob, sealed))
}

/// The public area of the device's HMAC key: a keyed-hash object, HMAC-SHA-256, whose
/// `unique` is `SHA-256(seedValue ‖ key)`, as the TPM checks it for keyed-hash objects when
/// it loads one.
fn hmac_key_public(seed_value: &[u8], key: &[u8]) -> Vec<u8> {
    let mut area = Vec::new();
    area.extend(TPM_ALG_KEYEDHASH.to_be_bytes());
    area.extend(TPM_ALG_SHA256.to_be_bytes());
    area.extend(HMAC_KEY_ATTRIBUTES.to_be_bytes());
    area.extend(sized(&[])); // authPolicy
    area.extend(TPM_ALG_HMAC.to_be_bytes());
    area.extend(TPM_ALG_SHA256.to_be_bytes());
    area.extend(sized(&sha256(&[seed_value, key])));
    area
}

/// The blob a TPM device gets back as `authenticationKey`: `key` (the device's HMAC key)
/// duplicated to its SRK behind an inner wrapper whose AES key is a credential made to its
/// EK for the SRK's name. Raw bytes; the wire carries them in base64.
pub fn authentication_key(
    ek: &TpmPublic,
    srk: &TpmPublic,
    key: &[u8],
) -> Result<Vec<u8>, DpsError> {
    // The object: its public area and its sensitive area (TPMT_SENSITIVE: type, an empty
    // authValue, the seed value, the key).
    let seed_value = ironhub_auth::random_bytes(DIGEST_LEN);
    let public = hmac_key_public(&seed_value, key);
    let object_name = name_of(&public);
    let mut sensitive = TPM_ALG_KEYEDHASH.to_be_bytes().to_vec();
    sensitive.extend(sized(&[]));
    sensitive.extend(sized(&seed_value));
    sensitive.extend(sized(key));
    let sensitive = sized(&sensitive); // TPM2B_SENSITIVE

    // Inner wrapper: AES-128-CFB under a fresh key of
    // `TPM2B_DIGEST(SHA-256(sensitive ‖ name)) ‖ sensitive`.
    let inner_key = ironhub_auth::random_bytes(INNER_KEY_LEN);
    let mut inner = sized(&sha256(&[&sensitive, &object_name]));
    inner.extend(&sensitive);
    let inner = aes_cfb(&inner_key, &inner)?;

    // Outer wrapper to the SRK, and the inner key as a credential to the EK for the SRK.
    let (duplicate, in_sym_seed) = outer_wrap(srk, "DUPLICATE", &object_name, &inner)?;
    let (credential, secret) = outer_wrap(ek, "IDENTITY", &srk.name(), &sized(&inner_key))?;

    let mut blob = sized(&credential);
    blob.extend(sized(&secret));
    blob.extend(sized(&duplicate));
    blob.extend(sized(&in_sym_seed));
    blob.extend(sized(&public));
    blob.extend(0u16.to_be_bytes());
    Ok(blob)
}

/// The HMAC key DPS gives the TPM device of `registration_id` with endorsement key `ek`
/// (its marshalled public area): derived with HMAC-SHA-256 from the instance's `secret`, so
/// every node of the service computes the same key for the same device without storing it,
/// and a new EK gets a new key.
pub fn device_key(secret: &[u8], registration_id: &str, ek: &TpmPublic) -> Vec<u8> {
    hmac_sha256(
        secret,
        &[
            b"ironhub tpm device key\0",
            registration_id.to_ascii_lowercase().as_bytes(),
            &[0],
            ek.area(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::traits::PublicKeyParts;

    /// A marshalled `TPM2B_PUBLIC` for an RSA storage key.
    fn tpm2b_public(key: &RsaPublicKey, sym_bits: u16) -> Vec<u8> {
        let mut a = TPM_ALG_RSA.to_be_bytes().to_vec();
        a.extend(TPM_ALG_SHA256.to_be_bytes());
        a.extend((ATTR_DECRYPT | (1 << 16)).to_be_bytes());
        a.extend(sized(&[]));
        a.extend(TPM_ALG_AES.to_be_bytes());
        a.extend(sym_bits.to_be_bytes());
        a.extend(TPM_ALG_CFB.to_be_bytes());
        a.extend(TPM_ALG_NULL.to_be_bytes());
        a.extend(2048u16.to_be_bytes());
        a.extend(0u32.to_be_bytes());
        a.extend(sized(&key.n().to_bytes_be()));
        sized(&a)
    }

    fn decrypt_cfb(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut buf = data.to_vec();
        let iv = [0u8; 16];
        match key.len() {
            16 => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, &iv)
                .unwrap()
                .decrypt(&mut buf),
            _ => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, &iv)
                .unwrap()
                .decrypt(&mut buf),
        }
        buf
    }

    /// What the TPM does with an outer wrapper: checks the HMAC, returns the plain text.
    fn unwrap_outer(
        private: &RsaPrivateKey,
        label: &str,
        name: &[u8],
        blob: &[u8],
        sealed: &[u8],
        key_len: usize,
    ) -> Option<Vec<u8>> {
        let padding = Oaep::new_with_label::<sha2::Sha256, _>(format!("{label}\0"));
        let seed = private.decrypt(padding, sealed).ok()?;
        let mut r = Reader(blob);
        let integrity = r.sized().ok()?.to_vec();
        let encrypted = r.0;
        let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], DIGEST_LEN);
        if hmac_sha256(&hmac_key, &[encrypted, name]) != integrity {
            return None;
        }
        let sym = kdfa(&seed, "STORAGE", name, &[], key_len);
        Some(decrypt_cfb(&sym, encrypted))
    }

    #[test]
    fn kdfa_is_counter_mode_hmac() {
        let out = kdfa(b"k", "STORAGE", b"u", b"", 40);
        let first = hmac_sha256(
            b"k",
            &[&1u32.to_be_bytes(), b"STORAGE\0u", &320u32.to_be_bytes()],
        );
        assert_eq!(out.len(), 40);
        assert_eq!(&out[..32], &first[..]);
    }

    #[test]
    fn the_blob_opens_with_the_ek_and_srk_private_keys() {
        let mut rng = rand_core::OsRng;
        let ek_priv = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let srk_priv = RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let ek_bytes = tpm2b_public(&ek_priv.to_public_key(), 128);
        let srk_bytes = tpm2b_public(&srk_priv.to_public_key(), 256);
        let ek = TpmPublic::from_bytes(&ek_bytes).unwrap();
        let srk = TpmPublic::from_bytes(&srk_bytes).unwrap();
        let key = device_key(b"secret", "Reg-1", &ek);
        assert_eq!(key, device_key(b"secret", "reg-1", &ek));

        let blob = authentication_key(&ek, &srk, &key).unwrap();
        let mut r = Reader(&blob);
        let credential = r.sized().unwrap();
        let secret = r.sized().unwrap();
        let duplicate = r.sized().unwrap();
        let seed = r.sized().unwrap();
        let public = r.sized().unwrap();
        assert_eq!(r.u16().unwrap(), 0);
        assert!(r.0.is_empty());

        // ActivateCredential: the inner key, bound to the SRK's name.
        let inner_key = unwrap_outer(&ek_priv, "IDENTITY", &srk.name(), credential, secret, 16)
            .expect("the credential opens");
        let inner_key = Reader(&inner_key).sized().unwrap().to_vec();
        assert_eq!(inner_key.len(), INNER_KEY_LEN);
        assert!(
            unwrap_outer(&ek_priv, "IDENTITY", &ek.name(), credential, secret, 16).is_none(),
            "bound to the SRK, not another object"
        );

        // Import: the outer wrapper, then the inner one, then the sensitive area.
        let name = name_of(public);
        let inner = unwrap_outer(&srk_priv, "DUPLICATE", &name, duplicate, seed, 32)
            .expect("the duplicate opens");
        let inner = decrypt_cfb(&inner_key, &inner);
        let mut r = Reader(&inner);
        let integrity = r.sized().unwrap().to_vec();
        assert_eq!(integrity, sha256(&[r.0, &name]));
        let mut s = Reader(r.sized().unwrap());
        assert_eq!(s.u16().unwrap(), TPM_ALG_KEYEDHASH);
        assert!(s.sized().unwrap().is_empty());
        let seed_value = s.sized().unwrap().to_vec();
        assert_eq!(s.sized().unwrap(), &key[..]);
        assert_eq!(public, hmac_key_public(&seed_value, &key));
    }

    #[test]
    fn keys_that_are_not_rsa_storage_keys_are_refused() {
        let mut ecc = TPM_ALG_ECC.to_be_bytes().to_vec();
        ecc.extend([0; 20]);
        assert!(
            TpmPublic::from_bytes(&ecc)
                .unwrap_err()
                .contains("only RSA")
        );
        assert!(TpmPublic::from_bytes(&[0, 1]).is_err());
        assert!(TpmPublic::from_base64("not base64!", "endorsement key").is_err());
    }
}
