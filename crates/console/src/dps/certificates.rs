//! The DPS instance's CA certificates (`/dps/certificates`): the hub's certificate pages
//! (`crate::certificates`), acting as the signed-in DPS policy with DPS's rights
//! (`DpsCertificatesRead`/`Write`, i.e. ServiceConfig).

use axum::extract::Path;
use axum::response::Response;

use super::access::{PostedDps, SignedDps};
use crate::certificates::{self as pages, Change, Owner, Upload};

/// `GET /console/dps/certificates`.
pub async fn list(signed: SignedDps) -> Response {
    pages::render_list(Owner::Dps(&signed), None).await
}

/// `POST /console/dps/certificates`.
pub async fn upload(PostedDps(signed, form): PostedDps<Upload>) -> Response {
    pages::uploaded(Owner::Dps(&signed), form).await
}

/// `GET /console/dps/certificates/{name}`.
pub async fn show(signed: SignedDps, Path(name): Path<String>) -> Response {
    pages::render(Owner::Dps(&signed), &name, None).await
}

/// `POST /console/dps/certificates/{name}/code`.
pub async fn generate_code(
    Path(name): Path<String>,
    PostedDps(signed, form): PostedDps<Change>,
) -> Response {
    pages::code_generated(Owner::Dps(&signed), &name, form).await
}

/// `POST /console/dps/certificates/{name}/verify`.
pub async fn verify(
    Path(name): Path<String>,
    PostedDps(signed, form): PostedDps<Change>,
) -> Response {
    pages::verified(Owner::Dps(&signed), &name, form).await
}

/// `POST /console/dps/certificates/{name}/delete`.
pub async fn delete(
    Path(name): Path<String>,
    PostedDps(signed, form): PostedDps<Change>,
) -> Response {
    pages::deleted(Owner::Dps(&signed), &name, form).await
}
