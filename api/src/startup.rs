//! Builds the HTTP server from a bound listener: production binds the configured address, tests
//! bind `127.0.0.1:0` and read the port back.

use std::net::TcpListener;
use std::time::Instant;

use tracing::Instrument;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::error::{problem_response, ApiError, PROBLEM_JSON};
use crate::head_timeout::{HeadTimeout, HEAD_TIMEOUT};
use crate::http_metrics::HttpMetrics;
use crate::routes::{
    actions, calendars, health, meta, revisions, runs, schedules, secrets, tenants,
};
use crate::state::AppState;
use actix_http::error::DispatchError;
use actix_service::{fn_service, ServiceFactoryExt};

/// The header that carries a request's id: taken from the request when the caller (or a proxy in
/// front) set a usable one, made up otherwise, and always echoed in the response and logged with
/// every line the request causes.
pub static REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// A caller's id is kept if it is short and printable, so it cannot forge log lines.
fn request_id(headers: &header::HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

pub fn run(
    listener: TcpListener,
    state: AppState,
    workers: Option<usize>,
) -> anyhow::Result<Server> {
    let metrics = HttpMetrics::register(&state.registry)?;
    let state = web::Data::new(state);
    let app = move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, service| {
                let started = Instant::now();
                let method = req.method().to_string();
                let route = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned());
                let request_id = request_id(req.headers());
                let span = tracing::info_span!("request", %request_id, %method, %route);
                let metrics = metrics.clone();
                let response = span.in_scope(|| actix_web::dev::Service::call(service, req));
                async move {
                    let mut response = problem_fallback(response.await?);
                    let status = response.status().as_u16();
                    let elapsed = started.elapsed().as_secs_f64();
                    metrics.observe(&method, &route, status, elapsed);
                    if let Ok(value) = header::HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert(REQUEST_ID.clone(), value);
                    }
                    tracing::info!(status, elapsed_ms = elapsed * 1e3, "request");
                    Ok(response)
                }
                .instrument(span)
            })
            .configure(routes)
            .default_service(web::to(not_found))
    };
    // HTTP/1 over connections whose first head must arrive within HEAD_TIMEOUT (see
    // `head_timeout`); otherwise as `HttpServer` sets it up.
    let mut server = actix_server::Server::build()
        .listen("hookbeat-api", listener, move || {
            let http = actix_http::HttpService::build()
                .keep_alive(std::time::Duration::from_secs(5))
                .client_request_timeout(HEAD_TIMEOUT + std::time::Duration::from_secs(1))
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .h1(actix_service::map_config(app(), |()| {
                    actix_web::dev::AppConfig::default()
                }));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                Ok::<_, DispatchError>((HeadTimeout::new(io, HEAD_TIMEOUT), peer))
            })
            .and_then(http)
        })?
        .disable_signals()
        .shutdown_timeout(10);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// The operational endpoints alone (`/healthz`, `/readyz`, `/metrics`), for a process that runs
/// only the worker.
pub fn run_operations(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let state = web::Data::new(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(meta::metrics))
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .run())
}

/// Declares every route once: registers it, and lists it in [`ROUTES`], so the router and the
/// list cannot drift apart, and a test compares the list with the OpenAPI paths both ways.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route as (method, path pattern).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

routes! {
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
    get "/metrics" => meta::metrics,
    get "/openapi.yaml" => meta::openapi,
    post "/v1/schedules" => schedules::create,
    get "/v1/schedules" => schedules::list,
    post "/v1/schedules/preview" => actions::preview,
    put "/v1/schedules/by-name/{name}" => schedules::put_by_name,
    get "/v1/schedules/{id}" => schedules::get,
    patch "/v1/schedules/{id}" => schedules::patch,
    delete "/v1/schedules/{id}" => schedules::delete,
    post "/v1/schedules/{id}/pause" => actions::pause,
    post "/v1/schedules/{id}/resume" => actions::resume,
    post "/v1/schedules/{id}/trigger" => actions::trigger,
    post "/v1/schedules/{id}/backfill" => actions::backfill,
    get "/v1/schedules/{id}/runs" => runs::list_for_schedule,
    get "/v1/schedules/{id}/timeline" => schedules::timeline,
    get "/v1/schedules/{id}/notices" => schedules::notices,
    get "/v1/schedules/{id}/revisions" => revisions::list,
    get "/v1/schedules/{id}/revisions/{version}" => revisions::get,
    post "/v1/schedules/{id}/revisions/{version}/restore" => revisions::restore,
    post "/v1/calendars" => calendars::create,
    get "/v1/calendars" => calendars::list,
    get "/v1/calendars/{name}" => calendars::get,
    patch "/v1/calendars/{name}" => calendars::patch,
    delete "/v1/calendars/{name}" => calendars::delete,
    get "/v1/runs" => runs::list,
    get "/v1/runs/{id}" => runs::get,
    post "/v1/runs/{id}/redeliver" => runs::redeliver,
    get "/v1/signing-secrets" => secrets::list,
    post "/v1/signing-secrets/rotate" => secrets::rotate,
    post "/v1/tenants" => tenants::create,
    get "/v1/tenants" => tenants::list,
    get "/v1/tenants/{id}" => tenants::get,
    patch "/v1/tenants/{id}" => tenants::patch,
    get "/v1/tenant" => tenants::get_own,
    patch "/v1/tenant" => tenants::patch_own,
}

/// Whether a concrete path matches a route pattern (`{name}` matches one segment).
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, path): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}') && !s.is_empty()) || p == s)
}

/// No route matched: 405 with `Allow` when the path exists for other methods, else 404.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, req.path()))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    if allowed.is_empty() {
        return actix_web::ResponseError::error_response(&ApiError::NotFound(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        )));
    }
    let mut response = problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not allowed on {}; use {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
        None,
    );
    if let Ok(value) = header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Turns any error response that is not already problem+json (one actix produces itself)
/// into one, so clients only ever parse one error format.
fn problem_fallback<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response.map_into_boxed_body();
    }
    let detail = status.canonical_reason().unwrap_or("error").to_owned();
    let slug = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        _ => "http-error",
    };
    let (request, _) = response.into_parts();
    ServiceResponse::new(request, problem_response(status, slug, detail, None))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::OpenApi;

    use super::*;

    /// The spec and the router agree both ways: every routed (method, path) is in the spec, and
    /// every spec operation is routed.
    #[test]
    fn the_spec_describes_exactly_the_routes() {
        let spec = crate::openapi::ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &spec.paths.paths {
            for (method, operation) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ] {
                if operation.is_some() {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "no route is declared twice");
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routed but not in openapi.yaml: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "in openapi.yaml but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn patterns_match_one_segment_per_parameter() {
        assert!(matches("/v1/schedules/{id}", "/v1/schedules/abc"));
        assert!(!matches("/v1/schedules/{id}", "/v1/schedules/abc/runs"));
        assert!(!matches("/v1/schedules/{id}", "/v1/schedules/"));
        assert!(matches("/v1/runs", "/v1/runs"));
    }
}
