//! The web dashboard: static pages served by the JobManager's REST server at `/`.
//!
//! The dashboard is plain HTML, CSS and ES-module JavaScript under `crates/eddy-cluster/web/`,
//! compiled into the binary, so it needs no build step and no files next to the JobManager.
//! It reads the REST API like any other client (polling every `web.refresh-interval`) and
//! sends `Authorization: Bearer <token>` on the requests that need it.
//!
//! `/` is the page and `/web/<file>` its assets. Every other path is the REST API's. Assets
//! are revalidated on each load (`Cache-Control: no-cache` with an `ETag`), so that a new
//! JobManager binary never serves a stale script from a browser's cache.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// A file of the dashboard.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../web/", $name)) }
    };
}

/// Every file of the dashboard; `index.html` is served at `/`, the others at `/web/<name>`.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dag.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("job.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The routes of the dashboard, merged into the REST API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/web/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// Strong validators of the assets, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return crate::rest::ApiError(StatusCode::NOT_FOUND, format!("Not found: /web/{name}"))
            .into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""))),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mut response = (common, asset.body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if asset.name == "index.html" {
        // The page only loads its own scripts and talks only to its own server.
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 connect-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served_and_every_served_asset_is_used() {
        let text = |name: &str| {
            std::str::from_utf8(ASSETS.iter().find(|a| a.name == name).unwrap().body).unwrap().to_string()
        };
        let all: String = ASSETS.iter().filter(|a| a.name != "favicon.svg").map(|a| text(a.name)).collect();
        for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(
                all.contains(&format!("/web/{}", asset.name)) || all.contains(&format!("./{}", asset.name)),
                "{} is embedded but nothing loads it",
                asset.name
            );
        }
        for (prefix, quote) in [("/web/", '"'), ("./", '\'')] {
            for part in all.split(prefix).skip(1) {
                let Some(name) = part.split(quote).next() else { continue };
                if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".svg") {
                    assert!(
                        ASSETS.iter().any(|a| a.name == name),
                        "{prefix}{name} is loaded but not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn etags_differ_between_assets() {
        let tags = etags();
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), ASSETS.len());
    }
}
