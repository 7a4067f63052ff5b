//! The console page, embedded in the binary: plain HTML, CSS and JavaScript with nothing loaded from
//! anywhere else. This module must never build a page from request data (no templating), so nothing a
//! caller sends can end up in the markup.

use http::Response;

use crate::http::Body;
use crate::reply::asset;

/// The console page, compiled into the binary: the console needs no files next to the broker and
/// loads nothing from other hosts, so it works offline and under a strict CSP.
const PAGE: &str = include_str!("index.html");
/// The page's script, served from `/console/console.js`.
const SCRIPT: &str = include_str!("console.js");
/// The operator view's script (every app, with the admin token), served from
/// `/console/operator.js`.
const OPERATOR_SCRIPT: &str = include_str!("operator.js");
/// The page's style sheet, served from `/console/console.css`.
const STYLE: &str = include_str!("console.css");

/// `GET /console`.
pub fn page() -> Response<Body> {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /console/console.js`.
pub fn script() -> Response<Body> {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/operator.js`.
pub fn operator_script() -> Response<Body> {
    asset("text/javascript; charset=utf-8", OPERATOR_SCRIPT)
}

/// `GET /console/console.css`.
pub fn style() -> Response<Body> {
    asset("text/css; charset=utf-8", STYLE)
}
