//! What the console's in-process tests share: a request as a browser sends it, a response's
//! text, and a field of a page.

// Each test file uses what it needs of this module.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, header};
use axum::response::Response;
use http_body_util::BodyExt as _;

/// A request with the session cookie if any; a POST carries `form` as a URL-encoded form.
pub fn request(method: &str, uri: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    if method == "POST" {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    request.body(Body::from(form.to_owned())).unwrap()
}

/// A response's body as text.
pub async fn text(response: Response) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the first field `name` in a page.
pub fn field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}
