//! The console page, embedded in the binary: plain HTML, CSS and JavaScript with nothing loaded from
//! anywhere else. This module must never build a page from request data (no templating), so nothing a
//! caller sends can end up in the markup.

use http::Response;

use crate::http::Body;
use crate::reply::asset;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// `GET /console`.
pub fn page() -> Response<Body> {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /console/console.js`.
pub fn script() -> Response<Body> {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/console.css`.
pub fn style() -> Response<Body> {
    asset("text/css; charset=utf-8", STYLE)
}
