//! Which path goes where: each transport's `routes()`, merged, then the pages and the
//! layers every answer goes through.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::ServiceExt;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::ApiError;
use crate::metrics::PostRefusal;
use crate::origin::request_host;
use crate::state::AppState;
use crate::{assets, request_log, transport};

/// The whole HTTP application.
pub fn build(state: AppState) -> Router {
    // With `--auth token`, every transport's requests carry a token.
    let transports = Router::new()
        .merge(transport::poll::routes())
        .merge(transport::stream::routes())
        .merge(transport::sse::routes())
        .merge(transport::rooms::routes())
        .merge(transport::websocket::routes())
        .merge(crate::auth::private_routes::routes())
        .merge(crate::auth::admin_routes::routes())
        .merge(crate::auth::deletion::routes())
        .merge(crate::auth::user_deletion::routes())
        .merge(crate::auth::admin_overview::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::gate::require_token,
        ));
    let api = Router::new()
        .merge(transports)
        .merge(transport::ws_echo::routes())
        .merge(crate::health::routes())
        .merge(crate::page_config::routes())
        .merge(crate::auth::accounts::routes())
        .method_not_allowed_fallback(method_not_allowed)
        // Posts from foreign origins are refused whatever CORS lets the page read.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_posts,
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers(Any)
                .max_age(std::time::Duration::from_secs(600))
                // Every answer is the same whatever the Origin or the preflight asked
                // (`*`), so none varies with them: no `Vary` to write on every response.
                .vary([]),
        )
        // Socket.IO brings its own CORS (--allow-origin) and origin check.
        .merge(transport::socketio::routes(&state));

    let app = match &state.config.web_root {
        Some(dir) => {
            let pages = dir.clone();
            api.fallback_service(
                ServeDir::new(dir)
                    .append_index_html_on_directories(true)
                    .fallback(axum::routing::any(move |req| {
                        assets::web_root_page(pages.clone(), req)
                    })),
            )
        }
        None => api.fallback(assets::embedded),
    };
    // `/` is the home page, or the WebSocket endpoint for a client asking to upgrade there
    // (the course's client connects to `ws://localhost:8080`).
    app.route("/", any(root))
        .layer(SetResponseHeaderLayer::overriding(
            assets::NOSNIFF.0,
            assets::NOSNIFF.1,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), served_hosts))
        .layer(request_log::layer(state.proxies.clone()))
        .with_state(state)
}

/// `app` with `Alt-Svc: h3=":PORT"` on every answer: for the HTTPS listener, so browsers move
/// to HTTP/3 by themselves.
pub fn with_alt_svc(app: Router, port: u16) -> Router {
    app.layer(SetResponseHeaderLayer::overriding(
        header::ALT_SVC,
        crate::h3::alt_svc(port),
    ))
}

async fn root(State(state): State<AppState>, mut req: Request) -> Response {
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
        // RFC 8441: a WebSocket over an HTTP/2 stream is an extended CONNECT.
        || req.extensions().get::<hyper::ext::Protocol>().is_some();
    if wants_upgrade {
        if let Some(refused) = crate::auth::gate::authenticate(&state, &mut req) {
            return refused;
        }
        return transport::websocket::upgrade(State(state), req).await;
    }
    match &state.config.web_root {
        Some(dir) => {
            let pages = ServeDir::new(dir).append_index_html_on_directories(true);
            match pages.oneshot(req).await {
                Ok(res) => res.into_response(),
                Err(never) => match never {},
            }
        }
        None => assets::embedded(req.headers().clone(), req).await,
    }
}

/// Refuses a state-changing request (anything but `GET`, `HEAD` and `OPTIONS`) from a foreign
/// origin with 403 (see [`crate::origin`]).
async fn same_origin_posts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Err(reason) = state.origins.check_for(&req, "post") {
            tracing::warn!(%reason, "post refused: foreign origin");
            state.metrics.post_refused(PostRefusal::Origin);
            return ApiError::new(StatusCode::FORBIDDEN, reason).into_response();
        }
    }
    next.run(req).await
}

/// Answers 421 to a request for a `Host` this server does not serve (`--allowed-hosts`): the
/// defence against DNS rebinding (see [`crate::origin`]).
async fn served_hosts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(host) = request_host(&req) {
        if !state.config.allowed_hosts.allows(host) {
            let reason = format!(
                "this server does not answer to the name {host:?}; start rtchat with --allowed-hosts naming it"
            );
            tracing::warn!(%reason, "request refused");
            return ApiError::new(StatusCode::MISDIRECTED_REQUEST, reason).into_response();
        }
    }
    next.run(req).await
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
