//! The frame of every console page: the document head (styles, script), and the bare page
//! of a refusal, which needs no session.

use maud::{DOCTYPE, Markup, html};

/// A page without navigation (sign-in, refusals).
pub fn bare(title: &str, body: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { main { h1 { (title) } p.notice.error { (body) } p { a href="/console" { "Back to the console" } } } }
        }
    }
}

/// The document head: the title, the viewport, the stylesheet and the script.
pub fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · ironhub" }
        link rel="stylesheet" href="/console/assets/console.css";
        script src="/console/assets/console.js" defer {}
    }
}
