//! `GET /`: a small page for whoever opens the broker's address in a browser. It names the server and
//! its version, and links to the debug console (when it is enabled) and the documentation, so that a
//! first visit does not end on a bare 404.
//!
//! The page is fixed at build time (two variants: with and without the console link). This module
//! must never build markup from request data, and never name an app, a key or a figure.

use http::Response;

use crate::reply::{asset, Body};

/// Where the documentation lives.
const DOCS_URL: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/tree/main/docs");

/// The page's head and title.
macro_rules! head {
    () => {
        concat!(
            "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<title>Vestnik ",
            env!("CARGO_PKG_VERSION"),
            "</title></head>\n<body>\n<h1>Vestnik</h1>\n<p>A realtime broker speaking the Pusher ",
            "Channels protocol, version ",
            env!("CARGO_PKG_VERSION"),
            ". Clients connect over WebSocket at <code>/app/{key}</code>; servers trigger through the ",
            "signed HTTP API at <code>/apps/{app_id}/events</code>.</p>\n<ul>\n"
        )
    };
}

/// The page's links to the docs and the end.
macro_rules! tail {
    () => {
        concat!(
            "<li><a href=\"",
            env!("CARGO_PKG_REPOSITORY"),
            "/tree/main/docs\">Documentation (docs)</a></li>\n</ul>\n</body>\n</html>\n"
        )
    };
}

/// The page when the console is enabled.
const WITH_CONSOLE: &str = concat!(
    head!(),
    "<li><a href=\"/console\">Debug console</a>: watch an app's events live, send a test event</li>\n",
    tail!()
);

/// The page when the console is disabled.
const WITHOUT_CONSOLE: &str = concat!(head!(), tail!());

/// `GET /` (and `HEAD /`).
pub fn page(console_enabled: bool) -> Response<Body> {
    debug_assert!(WITH_CONSOLE.contains(DOCS_URL));
    let page = if console_enabled {
        WITH_CONSOLE
    } else {
        WITHOUT_CONSOLE
    };
    asset("text/html; charset=utf-8", page)
}
