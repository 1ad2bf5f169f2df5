//! `GET /`: the page for people, and the assets it loads, all compiled into the binary
//! (no CDN; it works offline). Plain HTML, CSS and JavaScript, no build step; the page
//! reads and writes through the public API only.
//!
//! The price chart is TradingView's Lightweight Charts, vendored from the npm registry
//! with its licence beside it (`page/vendor/`).

use std::sync::{Arc, LazyLock};

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

/// The version of the vendored Lightweight Charts build (`page/vendor/VERSION`).
pub const CHARTS_VERSION: &str = include_str!("page/vendor/VERSION");

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Everything the page loads, the page first.
pub const ASSETS: [Asset; 8] = [
    Asset::new("/", HTML, include_str!("page/index.html")),
    Asset::new("/assets/app.css", CSS, include_str!("page/app.css")),
    Asset::new(
        "/assets/errors.js",
        JAVASCRIPT,
        include_str!("page/errors.js"),
    ),
    Asset::new(
        "/assets/early.js",
        JAVASCRIPT,
        include_str!("page/early.js"),
    ),
    Asset::new(
        "/assets/chart.js",
        JAVASCRIPT,
        include_str!("page/chart.js"),
    ),
    Asset::new("/assets/app.js", JAVASCRIPT, include_str!("page/app.js")),
    Asset::new(
        "/assets/budget.js",
        JAVASCRIPT,
        include_str!("page/budget.js"),
    ),
    Asset::new(
        "/assets/lightweight-charts.standalone.production.js",
        JAVASCRIPT,
        include_str!("page/vendor/lightweight-charts.standalone.production.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page's own content policy: nothing but this origin. Lightweight Charts sets
/// element styles from script, hence `'unsafe-inline'` for styles only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Each asset's `ETag`, in the order of [`ASSETS`]: a digest of its body, so a browser
/// that holds the file gets `304 Not Modified` instead of it again, and keeps the chart
/// library's compiled code between visits (Chromium caches it with the cached file).
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits are a header value")
        })
        .collect()
});

/// Serves the page and its assets to GET and HEAD; passes every other request on. A
/// middleware rather than routes, because the OpenAPI service is nested at `/`.
pub async fn serve<E: Endpoint>(next: Arc<E>, request: Request) -> poem::Result<Response> {
    let method = request.method();
    if (method == Method::GET || method == Method::HEAD)
        && let Some(index) = ASSETS
            .iter()
            .position(|asset| asset.path == request.uri().path())
    {
        let etag = &ETAGS[index];
        let held = request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == etag.to_str().unwrap_or_default() || tag.trim() == "*");
        return Ok(ASSETS[index].response(etag, held));
    }
    next.call(request).await.map(IntoResponse::into_response)
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            path,
            content_type,
            body,
        }
    }

    /// The file, or `304` without a body when the browser already `held` this version.
    fn response(&self, etag: &HeaderValue, held: bool) -> Response {
        let mut response = if held {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            self.body.with_status(StatusCode::OK).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        // Revalidated on each load (a new binary may serve another version), by its ETag.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::ETAG, etag.clone());
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        let page = ASSETS[0].body;
        for asset in &ASSETS[1..] {
            assert!(page.contains(asset.path), "the page loads {}", asset.path);
        }
        assert!(!page.contains("src=\"http") && !page.contains("stylesheet\" href=\"http"));
        assert!(CHARTS_VERSION.trim().starts_with('5'));
    }

    #[test]
    fn the_whole_page_stays_small() {
        let total: usize = ASSETS.iter().map(|asset| asset.body.len()).sum();
        assert!(total < 300 * 1024, "{total} bytes");
    }
}
