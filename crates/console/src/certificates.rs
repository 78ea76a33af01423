//! The hub's CA certificates (IoT Hub's `/certificates` API): the list and the upload form,
//! and a certificate's page with its verification code, the proof-of-possession form and
//! deletion. Posts carry the ETag the page showed, as `If-Match`, so a stale page changes
//! nothing.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ironhub_auth::access::Operation;
use ironhub_hub::HubError;
use maud::html;
use serde::Deserialize;

use crate::access::{Posted, Signed};
use crate::layout::{Notice, csrf, error_page, notice, page, segment};

/// The list's path.
pub const PATH: &str = "/console/certificates";

/// `GET /console/certificates`.
pub async fn list(signed: Signed) -> Response {
    render_list(&signed, None).await
}

async fn render_list(signed: &Signed, refused: Option<&HubError>) -> Response {
    let certificates = match signed.may(Operation::HubCertificatesRead).await {
        Ok(()) => signed.hub.list_certificates().await,
        Err(e) => Err(e),
    };
    let can_write = signed.can(Operation::HubCertificatesWrite).await;
    let message = refused.map(Notice::error);
    let body = html! {
        (notice(message.as_ref()))
        p { "CA certificates whose devices may sign in with certificates they signed (authentication "
            code { "certificateAuthority" } "), once possession of their key is proven." }
        @match &certificates {
            Err(e) => p.notice.error { (e.to_string()) },
            Ok(list) if list.is_empty() => p { "No certificates." },
            Ok(list) => {
                div.scroll {
                    table #certificates {
                        thead { tr { th { "Name" } th { "Subject" } th { "Thumbprint" } th { "Expires" } th { "Verified" } } }
                        tbody {
                            @for c in list {
                                tr {
                                    td { a href={ (PATH) "/" (segment(&c.name)) } { (c.name) } }
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
                form #upload-certificate method="post" action=(PATH) {
                    (csrf(signed))
                    label for="name" { "Name" }
                    input #name type="text" name="name" required;
                    label for="certificate" { "Certificate (PEM)" }
                    textarea #certificate name="certificate" required placeholder="-----BEGIN CERTIFICATE-----" {}
                    button type="submit" { "Upload" }
                }
            }
        }
    };
    let status = refused
        .and_then(|e| StatusCode::from_u16(e.status()).ok())
        .unwrap_or(StatusCode::OK);
    (status, page(signed, "Certificates", body)).into_response()
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
    let name = form.name.trim().to_owned();
    let result = async {
        signed.may(Operation::HubCertificatesWrite).await?;
        signed
            .hub
            .put_certificate(&name, &form.certificate, false, None)
            .await
    }
    .await;
    match result {
        Ok(_) => {
            tracing::info!(target: "ServiceOperations", certificate = %name, policy = %signed.policy, "CA certificate uploaded from the console");
            Redirect::to(&certificate_path(&name)).into_response()
        }
        Err(e) => render_list(&signed, Some(&e)).await,
    }
}

fn certificate_path(name: &str) -> String {
    format!("{PATH}/{}", segment(name))
}

/// `GET /console/certificates/{name}`.
pub async fn show(signed: Signed, Path(name): Path<String>) -> Response {
    render(&signed, &name, None, None).await
}

async fn render(
    signed: &Signed,
    name: &str,
    status: Option<StatusCode>,
    message: Option<Notice>,
) -> Response {
    let certificate = match signed.may(Operation::HubCertificatesRead).await {
        Ok(()) => signed.hub.get_certificate(name).await,
        Err(e) => Err(e),
    };
    let c = match certificate {
        Ok(c) => c,
        Err(e) => return error_page(signed, &e),
    };
    let can_write = signed.can(Operation::HubCertificatesWrite).await;
    let path = certificate_path(name);
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
                        (csrf(signed))
                        input type="hidden" name="etag" value=(c.etag);
                        label for="proof" { "Verification certificate (PEM)" }
                        textarea #proof name="certificate" required {}
                        button type="submit" { "Verify" }
                    }
                }
                form.inline #code-form method="post" action={ (path) "/code" } {
                    (csrf(signed))
                    input type="hidden" name="etag" value=(c.etag);
                    button type="submit" { "Generate a verification code" }
                }
            }
        }
        @if can_write {
            form.inline #delete-certificate method="post" action={ (path) "/delete" } data-confirm={ "Delete the certificate " (name) "?" } {
                (csrf(signed))
                input type="hidden" name="etag" value=(c.etag);
                button.danger type="submit" { "Delete" }
            }
        }
    };
    let title = format!("Certificate {name}");
    (status.unwrap_or(StatusCode::OK), page(signed, &title, body)).into_response()
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
    let result = async {
        signed.may(Operation::HubCertificatesWrite).await?;
        signed
            .hub
            .generate_verification_code(&name, form.if_match())
            .await
    }
    .await;
    after(
        &signed,
        &name,
        result.map(|_| "A verification code was generated."),
    )
    .await
}

/// `POST /console/certificates/{name}/verify`: proof of possession.
pub async fn verify(Path(name): Path<String>, Posted(signed, form): Posted<Change>) -> Response {
    let result = async {
        signed.may(Operation::HubCertificatesWrite).await?;
        signed
            .hub
            .verify_certificate(&name, &form.certificate, form.if_match())
            .await
    }
    .await;
    tracing::info!(target: "ServiceOperations", certificate = %name, ok = result.is_ok(), policy = %signed.policy, "CA certificate proof of possession from the console");
    after(
        &signed,
        &name,
        result.map(|_| "The certificate is verified."),
    )
    .await
}

/// The certificate's page after a post, with its outcome.
async fn after(signed: &Signed, name: &str, result: Result<&str, HubError>) -> Response {
    match result {
        Ok(text) => render(signed, name, None, Some(Notice::ok(text))).await,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).ok();
            render(signed, name, status, Some(Notice::error(&e))).await
        }
    }
}

/// `POST /console/certificates/{name}/delete`.
pub async fn delete(Path(name): Path<String>, Posted(signed, form): Posted<Change>) -> Response {
    let result = async {
        signed.may(Operation::HubCertificatesWrite).await?;
        signed.hub.delete_certificate(&name, form.if_match()).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(target: "ServiceOperations", certificate = %name, policy = %signed.policy, "CA certificate deleted from the console");
            Redirect::to(PATH).into_response()
        }
        Err(e) => error_page(&signed, &e),
    }
}
