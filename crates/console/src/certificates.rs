//! CA certificates, the hub's (IoT Hub's `/certificates` API) and the DPS instance's
//! (`/dps/certificates`): the list and the upload form, and a certificate's page with its
//! verification code, the proof-of-possession form and deletion. Posts carry the ETag the
//! page showed, as `If-Match`, so a stale page changes nothing. One set of pages serves both
//! services through [`Owner`]; each asks its own service's rights.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_store::CertificateRecord;
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::{Posted, Signed};
use crate::dps::access::SignedDps;
use crate::layout::{Notice, notice, segment};

/// The hub's list's path.
pub const PATH: &str = "/console/certificates";
/// The DPS instance's list's path.
pub const DPS_PATH: &str = "/console/dps/certificates";

/// A refusal of either service, as a page shows it.
#[derive(Debug, Clone)]
pub struct Refusal {
    status: StatusCode,
    text: String,
}

impl From<ironhub_hub::HubError> for Refusal {
    fn from(e: ironhub_hub::HubError) -> Refusal {
        Refusal {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            text: e.to_string(),
        }
    }
}

impl From<ironhub_dps::DpsError> for Refusal {
    fn from(e: ironhub_dps::DpsError) -> Refusal {
        Refusal {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            text: e.to_string(),
        }
    }
}

/// Whose CA certificates a page shows: the hub's (as its signed-in policy) or the DPS
/// instance's (as its signed-in DPS policy).
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    Hub(&'a Signed),
    Dps(&'a SignedDps),
}

impl<'a> Owner<'a> {
    fn path(self) -> &'static str {
        match self {
            Owner::Hub(_) => PATH,
            Owner::Dps(_) => DPS_PATH,
        }
    }

    fn page(self, title: &str, body: Markup) -> Markup {
        match self {
            Owner::Hub(s) => crate::layout::page(s, title, body),
            Owner::Dps(s) => crate::dps::layout::page(s, title, body),
        }
    }

    fn csrf(self) -> Markup {
        match self {
            Owner::Hub(s) => crate::layout::csrf(s),
            Owner::Dps(s) => crate::dps::layout::csrf(s),
        }
    }

    /// Whether the policy may read (`write` false) or change the certificates.
    async fn may(self, write: bool) -> Result<(), Refusal> {
        match self {
            Owner::Hub(s) => Ok(s
                .may(if write {
                    Operation::HubCertificatesWrite
                } else {
                    Operation::HubCertificatesRead
                })
                .await?),
            Owner::Dps(s) => Ok(s
                .may(if write {
                    Operation::DpsCertificatesWrite
                } else {
                    Operation::DpsCertificatesRead
                })
                .await?),
        }
    }

    async fn list(self) -> Result<Vec<CertificateRecord>, Refusal> {
        self.may(false).await?;
        match self {
            Owner::Hub(s) => Ok(s.hub.list_certificates().await?),
            Owner::Dps(s) => Ok(s.dps.list_certificates().await?),
        }
    }

    async fn get(self, name: &str) -> Result<CertificateRecord, Refusal> {
        self.may(false).await?;
        match self {
            Owner::Hub(s) => Ok(s.hub.get_certificate(name).await?),
            Owner::Dps(s) => Ok(s.dps.get_certificate(name).await?),
        }
    }

    async fn upload(self, name: &str, pem: &str) -> Result<(), Refusal> {
        self.may(true).await?;
        match self {
            Owner::Hub(s) => s.hub.put_certificate(name, pem, false, None).await?,
            Owner::Dps(s) => s.dps.put_certificate(name, pem, false, None).await?,
        };
        Ok(())
    }

    async fn generate_code(self, name: &str, if_match: Option<&str>) -> Result<(), Refusal> {
        self.may(true).await?;
        match self {
            Owner::Hub(s) => s.hub.generate_verification_code(name, if_match).await?,
            Owner::Dps(s) => s.dps.generate_verification_code(name, if_match).await?,
        };
        Ok(())
    }

    async fn verify(self, name: &str, proof: &str, if_match: Option<&str>) -> Result<(), Refusal> {
        self.may(true).await?;
        match self {
            Owner::Hub(s) => s.hub.verify_certificate(name, proof, if_match).await?,
            Owner::Dps(s) => s.dps.verify_certificate(name, proof, if_match).await?,
        };
        Ok(())
    }

    async fn delete(self, name: &str, if_match: Option<&str>) -> Result<(), Refusal> {
        self.may(true).await?;
        match self {
            Owner::Hub(s) => s.hub.delete_certificate(name, if_match).await?,
            Owner::Dps(s) => s.dps.delete_certificate(name, if_match).await?,
        }
        Ok(())
    }

    fn policy(self) -> &'a str {
        match self {
            Owner::Hub(s) => &s.policy,
            Owner::Dps(s) => &s.policy,
        }
    }

    /// A page with the status of a refusal.
    fn error_page(self, e: &Refusal) -> Response {
        let body = html! { p.notice.error { (e.text) } };
        (e.status, self.page("Not possible", body)).into_response()
    }
}

fn refused(e: &Refusal) -> Notice {
    Notice {
        ok: false,
        text: e.text.clone(),
    }
}

/// `GET /console/certificates`.
pub async fn list(signed: Signed) -> Response {
    render_list(Owner::Hub(&signed), None).await
}

/// The list of `owner`'s certificates, with the upload form when the policy may write.
pub async fn render_list(owner: Owner<'_>, refusal: Option<&Refusal>) -> Response {
    let certificates = owner.list().await;
    let can_write = owner.may(true).await.is_ok();
    let message = refusal.map(refused);
    let path = owner.path();
    let body = html! {
        (notice(message.as_ref()))
        p { "CA certificates whose devices may sign in with certificates they signed (authentication "
            code { "certificateAuthority" } " on the hub, a CA reference in a DPS enrollment), once possession of their key is proven." }
        @match &certificates {
            Err(e) => p.notice.error { (e.text) },
            Ok(list) if list.is_empty() => p { "No certificates." },
            Ok(list) => {
                div.scroll {
                    table #certificates {
                        thead { tr { th { "Name" } th { "Subject" } th { "Thumbprint" } th { "Expires" } th { "Verified" } } }
                        tbody {
                            @for c in list {
                                tr {
                                    td { a href={ (path) "/" (segment(&c.name)) } { (c.name) } }
                                    td { (c.subject) }
                                    td { code { (c.thumbprint) } }
                                    td { (c.expiry.to_rfc3339()) }
                                    td { (if c.is_verified { "yes" } else { "no" }) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if can_write {
            section {
                h2 { "Upload a CA certificate" }
                form #upload-certificate method="post" action=(path) {
                    (owner.csrf())
                    label for="name" { "Name" }
                    input #name type="text" name="name" required;
                    label for="certificate" { "Certificate (PEM)" }
                    textarea #certificate name="certificate" required placeholder="-----BEGIN CERTIFICATE-----" {}
                    button type="submit" { "Upload" }
                }
            }
        }
    };
    let status = refusal.map_or(StatusCode::OK, |e| e.status);
    (status, owner.page("Certificates", body)).into_response()
}

/// What the upload form posts.
#[derive(Debug, Deserialize)]
pub struct Upload {
    #[serde(default)]
    name: String,
    #[serde(default)]
    certificate: String,
}

/// `POST /console/certificates`: uploads a certificate, not verified.
pub async fn upload(Posted(signed, form): Posted<Upload>) -> Response {
    uploaded(Owner::Hub(&signed), form).await
}

/// Uploads the form's certificate to `owner`, not verified, and shows its page.
pub async fn uploaded(owner: Owner<'_>, form: Upload) -> Response {
    let name = form.name.trim().to_owned();
    match owner.upload(&name, &form.certificate).await {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", certificate = %name, policy = %owner.policy(), "CA certificate uploaded from the console");
            Redirect::to(&certificate_path(owner, &name)).into_response()
        }
        Err(e) => render_list(owner, Some(&e)).await,
    }
}

fn certificate_path(owner: Owner<'_>, name: &str) -> String {
    format!("{}/{}", owner.path(), segment(name))
}

/// `GET /console/certificates/{name}`.
pub async fn show(signed: Signed, Path(name): Path<String>) -> Response {
    render(Owner::Hub(&signed), &name, None).await
}

/// A certificate's page, with the outcome of a post.
pub async fn render(
    owner: Owner<'_>,
    name: &str,
    outcome: Option<Result<&str, Refusal>>,
) -> Response {
    let c = match owner.get(name).await {
        Ok(c) => c,
        Err(e) => return owner.error_page(&e),
    };
    let (status, message) = match &outcome {
        None => (StatusCode::OK, None),
        Some(Ok(text)) => (StatusCode::OK, Some(Notice::ok(*text))),
        Some(Err(e)) => (e.status, Some(refused(e))),
    };
    let can_write = owner.may(true).await.is_ok();
    let path = certificate_path(owner, name);
    let body = html! {
        (notice(message.as_ref()))
        section #certificate-details {
            p { "Subject: " (c.subject) }
            p { "Thumbprint: " code { (c.thumbprint) } }
            p { "Expires: " (c.expiry.to_rfc3339()) }
            p { "Verified: " b #verified { (if c.is_verified { "yes" } else { "no" }) } }
            details { summary { "PEM" } pre { (c.certificate) } }
        }
        @if can_write && !c.is_verified {
            section {
                h2 { "Proof of possession" }
                @if let Some(code) = &c.verification_code {
                    p { "Verification code: " code #verification-code { (code) } }
                    p { "Sign a certificate whose subject's CN is this code with the CA's key, and paste it here." }
                    form #verify-form method="post" action={ (path) "/verify" } {
                        (owner.csrf())
                        input type="hidden" name="etag" value=(c.etag);
                        label for="proof" { "Verification certificate (PEM)" }
                        textarea #proof name="certificate" required {}
                        button type="submit" { "Verify" }
                    }
                }
                form.inline #code-form method="post" action={ (path) "/code" } {
                    (owner.csrf())
                    input type="hidden" name="etag" value=(c.etag);
                    button type="submit" { "Generate a verification code" }
                }
            }
        }
        @if can_write {
            form.inline #delete-certificate method="post" action={ (path) "/delete" } data-confirm={ "Delete the certificate " (name) "?" } {
                (owner.csrf())
                input type="hidden" name="etag" value=(c.etag);
                button.danger type="submit" { "Delete" }
            }
        }
    };
    let title = format!("Certificate {name}");
    (status, owner.page(&title, body)).into_response()
}

/// What the certificate page's forms post: the ETag shown, and a proof (verify only).
#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    etag: String,
    #[serde(default)]
    certificate: String,
}

impl Change {
    fn if_match(&self) -> Option<&str> {
        Some(self.etag.as_str()).filter(|e| !e.is_empty())
    }
}

/// `POST /console/certificates/{name}/code`: a fresh verification code.
pub async fn generate_code(
    Path(name): Path<String>,
    Posted(signed, form): Posted<Change>,
) -> Response {
    code_generated(Owner::Hub(&signed), &name, form).await
}

/// Generates a verification code for `owner`'s certificate and shows its page.
pub async fn code_generated(owner: Owner<'_>, name: &str, form: Change) -> Response {
    let result = owner.generate_code(name, form.if_match()).await;
    render(
        owner,
        name,
        Some(result.map(|()| "A verification code was generated.")),
    )
    .await
}

/// `POST /console/certificates/{name}/verify`: proof of possession.
pub async fn verify(Path(name): Path<String>, Posted(signed, form): Posted<Change>) -> Response {
    verified(Owner::Hub(&signed), &name, form).await
}

/// Checks the proof of possession of `owner`'s certificate and shows its page.
pub async fn verified(owner: Owner<'_>, name: &str, form: Change) -> Response {
    let result = owner.verify(name, &form.certificate, form.if_match()).await;
    tracing::info!(target: "ServiceOperations", certificate = %name, ok = result.is_ok(), policy = %owner.policy(), "CA certificate proof of possession from the console");
    render(
        owner,
        name,
        Some(result.map(|()| "The certificate is verified.")),
    )
    .await
}

/// `POST /console/certificates/{name}/delete`.
pub async fn delete(Path(name): Path<String>, Posted(signed, form): Posted<Change>) -> Response {
    deleted(Owner::Hub(&signed), &name, form).await
}

/// Deletes `owner`'s certificate and goes back to the list.
pub async fn deleted(owner: Owner<'_>, name: &str, form: Change) -> Response {
    match owner.delete(name, form.if_match()).await {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", certificate = %name, policy = %owner.policy(), "CA certificate deleted from the console");
            Redirect::to(owner.path()).into_response()
        }
        Err(e) => owner.error_page(&e),
    }
}
