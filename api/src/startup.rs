//! Builds the HTTP server from a bound listener: production binds the configured address, tests
//! bind `127.0.0.1:0` and read the port back.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::error::{problem_response, ApiError, PROBLEM_JSON};
use crate::http_metrics::HttpMetrics;
use crate::routes::{health, meta, runs, schedules, secrets, tenants};
use crate::state::AppState;

pub fn run(
    listener: TcpListener,
    state: AppState,
    workers: Option<usize>,
) -> anyhow::Result<Server> {
    let metrics = HttpMetrics::register(&state.registry)?;
    let state = web::Data::new(state);
    let mut server =
        HttpServer::new(move || {
            let metrics = metrics.clone();
            App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, service| {
                let started = Instant::now();
                let method = req.method().to_string();
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                let metrics = metrics.clone();
                let response = actix_web::dev::Service::call(service, req);
                async move {
                    let response = problem_fallback(response.await?);
                    let status = response.status().as_u16();
                    let elapsed = started.elapsed().as_secs_f64();
                    metrics.observe(&method, &route, status, elapsed);
                    tracing::debug!(%method, %route, status, elapsed_ms = elapsed * 1e3, "request");
                    Ok(response)
                }
            })
            .configure(routes)
            .default_service(web::to(not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// Every route. The spec's `paths` list must name the same ones (a test checks).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(meta::metrics))
        .route("/openapi.yaml", web::get().to(meta::openapi))
        .service(
            web::scope("/v1")
                .service(
                    web::resource("/schedules")
                        .route(web::post().to(schedules::create))
                        .route(web::get().to(schedules::list)),
                )
                .route("/schedules/preview", web::post().to(schedules::preview))
                .service(
                    web::resource("/schedules/{id}")
                        .route(web::get().to(schedules::get))
                        .route(web::patch().to(schedules::patch))
                        .route(web::delete().to(schedules::delete)),
                )
                .route("/schedules/{id}/pause", web::post().to(schedules::pause))
                .route("/schedules/{id}/resume", web::post().to(schedules::resume))
                .route(
                    "/schedules/{id}/trigger",
                    web::post().to(schedules::trigger),
                )
                .route(
                    "/schedules/{id}/runs",
                    web::get().to(runs::list_for_schedule),
                )
                .route("/runs", web::get().to(runs::list))
                .route("/runs/{id}", web::get().to(runs::get))
                .route("/runs/{id}/redeliver", web::post().to(runs::redeliver))
                .route("/signing-secrets", web::get().to(secrets::list))
                .route("/signing-secrets/rotate", web::post().to(secrets::rotate))
                .service(
                    web::resource("/tenants")
                        .route(web::post().to(tenants::create))
                        .route(web::get().to(tenants::list)),
                )
                .service(
                    web::resource("/tenants/{id}")
                        .route(web::get().to(tenants::get))
                        .route(web::patch().to(tenants::patch)),
                ),
        );
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Turns any error response that is not already problem+json (actix's own 405, for instance)
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
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "{} is not allowed on {}",
            response.request().method(),
            response.request().path()
        ),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let slug = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        _ => "http-error",
    };
    let (request, _) = response.into_parts();
    ServiceResponse::new(request, problem_response(status, slug, detail, None))
}
