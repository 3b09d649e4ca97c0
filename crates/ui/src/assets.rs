//! Static files embedded in the binary (`include_bytes!`), served under `/ui/assets/`.
//! Names carry the version of vendored libraries, so they may be cached for long.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "graph.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/graph.js"),
    },
    Asset {
        name: "favicon.svg",
        mime: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
    Asset {
        name: "htmx-2.0.11.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../vendor/htmx-2.0.11.min.js"),
    },
    Asset {
        name: "cytoscape-3.35.0.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../vendor/cytoscape-3.35.0.min.js"),
    },
    Asset {
        name: "dagre-0.8.5.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../vendor/dagre-0.8.5.min.js"),
    },
    Asset {
        name: "cytoscape-dagre-2.5.0.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../vendor/cytoscape-dagre-2.5.0.js"),
    },
];

/// A short version tag appended to asset URLs so a new binary's files are fetched afresh.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /ui/assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => (
            [
                (http::header::CONTENT_TYPE, a.mime),
                (http::header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            a.body,
        )
            .into_response(),
        None => (http::StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
