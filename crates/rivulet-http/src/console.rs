//! The web console: a page, a script and a style sheet compiled into the binary and served
//! at `/` by the gateway. It holds no data; everything it shows and does goes through the
//! documented `/v1` API (with the user's login when logins are on), so these routes need no
//! login themselves.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The console's files: name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
];

/// Scripts and styles only from the gateway itself; no frames, no plugins.
const CSP: &str =
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(name: &str) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            40400,
            format!("no console file {name:?}"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        *body,
    )
        .into_response())
}

/// `GET /`: the console's page.
pub(crate) async fn index() -> Result<Response, ApiError> {
    asset("index.html")
}

/// `GET /console/{file}`: its script and style sheet.
pub(crate) async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    asset(&name)
}

/// True for the console's own routes, which need no login.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

/// Bytes of the console's files together.
pub fn size_bytes() -> usize {
    ASSETS.iter().map(|(_, _, b)| b.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_and_others_are_not() {
        for (name, _, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is empty");
            assert!(asset(name).is_ok());
        }
        assert!(asset("../Cargo.toml").is_err());
        assert!(is_console_path("/") && is_console_path("/console/console.js"));
        assert!(!is_console_path("/v1/topics"));
        assert!(size_bytes() < 300 * 1024, "the console's files grew past 300 KB");
    }
}
