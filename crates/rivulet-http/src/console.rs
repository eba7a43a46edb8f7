//! The web console: a page, a script and a style sheet compiled into the binary and served
//! at `/` by the gateway. It holds no data; everything it shows and does goes through the
//! documented `/v1` API (with the user's login when logins are on), so these routes need no
//! login themselves.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One of the console's files: name, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

/// A script module of the console.
macro_rules! module {
    ($name:literal) => {
        (
            $name,
            "text/javascript; charset=utf-8",
            include_bytes!(concat!("../console/", $name)),
        )
    };
}

/// The console's files: the page, its style sheet, and its script modules (`console.js`
/// routes to one module per page; the others are shared by the pages).
const ASSETS: [Asset; 18] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
    module!("console.js"),
    module!("api.js"),
    module!("format.js"),
    module!("html.js"),
    module!("live.js"),
    module!("notify.js"),
    module!("login.js"),
    module!("overview.js"),
    module!("topics.js"),
    module!("browse.js"),
    module!("groups.js"),
    module!("dead-letters.js"),
    module!("amqp.js"),
    module!("transactions.js"),
    module!("streams.js"),
    module!("jobs.js"),
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
            if name.ends_with(".js") {
                let imports = String::from_utf8_lossy(body);
                for line in imports.lines().filter(|l| l.starts_with("import ")) {
                    let target = line
                        .rsplit("\"./")
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches("\";");
                    assert!(
                        ASSETS.iter().any(|(n, _, _)| *n == target),
                        "{name} imports {target}, which is not served"
                    );
                }
            }
            assert!(!body.is_empty(), "{name} is empty");
            assert!(asset(name).is_ok());
        }
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/console"))
            .expect("console directory")
            .count();
        assert_eq!(on_disk, ASSETS.len(), "every file in console/ is served");
        assert!(asset("../Cargo.toml").is_err());
        assert!(is_console_path("/") && is_console_path("/console/console.js"));
        assert!(!is_console_path("/v1/topics"));
        assert!(size_bytes() < 300 * 1024, "the console's files grew past 300 KB");
    }
}
