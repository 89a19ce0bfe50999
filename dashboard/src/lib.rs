//! augur-dashboard: the web pages researchers keep open during an ablation,
//! served by axum straight from the store (read-only connections: the
//! runner's writes are never blocked).
//!
//! - `/`: every sweep with its runs per state and progress;
//! - `/runs`: the runs table (filter, sort, paginate on the server, pick
//!   columns), with CSV/JSON export;
//! - `/run/{id}`: config, schema, commit, attempts and errors, metric charts
//!   with smoothing, evaluations, sensitivity chart; metric series export;
//! - `/compare?runs=1,2`: curves overlaid, config diff;
//! - `/ablation?sweep=..`: mean +- std and n per group, delta against a
//!   baseline group, best cell marked; CSV, Markdown and LaTeX export;
//! - `/events`: server-sent events that tell open pages to refresh.
//!
//! Pages are rendered on the server (maud escapes every value), charts are
//! SVG drawn by plotters; nothing is fetched from elsewhere.

pub mod bench;
pub mod charts;
pub mod pages;
pub mod stats;
pub mod tables;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use augur_store::Store;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};

use crate::pages::Params;

/// A sweep's runs table (none before the first request), the change token
/// it was built at, and what it was built from.
#[derive(Default)]
struct CachedTable {
    token: String,
    table: Option<Arc<tables::Table>>,
    source: tables::TableSource,
}

/// The store every handler reads, and the runs tables built from it.
#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    /// Per sweep (`None`: all runs): rebuilt only when the store has
    /// changed, and then only from what changed, so a page of a 10,000-run
    /// sweep costs one cheap query plus work in memory.
    tables: Arc<std::sync::Mutex<std::collections::HashMap<Option<i64>, Arc<std::sync::Mutex<CachedTable>>>>>,
}

impl App {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, tables: Default::default() }
    }

    /// The runs table of a sweep, from the cache while the store is unchanged.
    pub fn table(&self, sweep: Option<i64>) -> Result<Arc<tables::Table>, PageError> {
        // Training progress does not change a runs table: only states and evaluations.
        let token = self.store.table_token()?;
        let cached = self.tables.lock().unwrap_or_else(|e| e.into_inner()).entry(sweep).or_default().clone();
        // One rebuild per sweep at a time; other sweeps' requests do not wait.
        let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
        match &cached.table {
            Some(table) if cached.token == token => Ok(table.clone()),
            _ => {
                let table = match cached.source.refresh(&self.store, sweep) {
                    Ok(table) => Arc::new(table),
                    Err(e) => {
                        // A half-applied refresh is not trusted: start again next time.
                        cached.source = Default::default();
                        return Err(e.into());
                    }
                };
                cached.table = Some(table.clone());
                cached.token = token;
                Ok(table)
            }
        }
    }
}

/// An error page: 404 for what does not exist, 400 for a bad parameter, 500 otherwise.
pub struct PageError(StatusCode, pub String);

impl PageError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, what.into())
    }
    pub fn bad_request(what: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, what.into())
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = pages::layout("error", None, maud::html! { p.error { (self.1) } });
        (self.0, body).into_response()
    }
}

type Page = Result<Response, PageError>;

/// Run a blocking store query off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, PageError> + Send + 'static) -> Result<T, PageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn html(markup: maud::Markup) -> Response {
    markup.into_response()
}

fn download(content_type: &'static str, filename: String, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes over a store.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/", get(sweeps))
        .route("/runs", get(runs))
        .route("/runs.csv", get(runs_csv))
        .route("/runs.json", get(runs_json))
        .route("/run/{id}", get(run))
        .route("/run/{id}/metrics.csv", get(metrics_csv))
        .route("/run/{id}/metrics.json", get(metrics_json))
        .route("/compare", get(compare))
        .route("/ablation", get(ablation))
        .route("/ablation.csv", get(ablation_csv))
        .route("/ablation.md", get(ablation_md))
        .route("/ablation.tex", get(ablation_tex))
        .route("/events", get(events))
        .route("/assets/style.css", get(style))
        .route("/assets/live.js", get(live_js))
        .with_state(App::new(store))
}

async fn sweeps(State(app): State<App>) -> Page {
    blocking(move || pages::sweeps(&app)).await.map(html)
}

async fn runs(State(app): State<App>, Query(p): Query<Params>) -> Page {
    blocking(move || pages::runs(&app, &p)).await.map(html)
}

async fn runs_csv(State(app): State<App>, Query(p): Query<Params>) -> Page {
    let body = blocking(move || pages::runs_export(&app, &p, tables::ExportFormat::Csv)).await?;
    Ok(download("text/csv; charset=utf-8", "runs.csv".into(), body))
}

async fn runs_json(State(app): State<App>, Query(p): Query<Params>) -> Page {
    let body = blocking(move || pages::runs_export(&app, &p, tables::ExportFormat::Json)).await?;
    Ok(download("application/json", "runs.json".into(), body))
}

async fn run(State(app): State<App>, Path(id): Path<i64>, Query(p): Query<Params>) -> Page {
    blocking(move || pages::run(&app, id, &p)).await.map(html)
}

async fn metrics_csv(State(app): State<App>, Path(id): Path<i64>) -> Page {
    let body = blocking(move || pages::metrics_export(&app, id, tables::ExportFormat::Csv)).await?;
    Ok(download("text/csv; charset=utf-8", format!("run-{id}-metrics.csv"), body))
}

async fn metrics_json(State(app): State<App>, Path(id): Path<i64>) -> Page {
    let body = blocking(move || pages::metrics_export(&app, id, tables::ExportFormat::Json)).await?;
    Ok(download("application/json", format!("run-{id}-metrics.json"), body))
}

async fn compare(State(app): State<App>, Query(p): Query<Params>) -> Page {
    blocking(move || pages::compare(&app, &p)).await.map(html)
}

async fn ablation(State(app): State<App>, Query(p): Query<Params>) -> Page {
    blocking(move || pages::ablation(&app, &p)).await.map(html)
}

async fn ablation_export(app: App, p: Params, format: tables::ExportFormat, content_type: &'static str, extension: &str) -> Page {
    let name = format!("ablation.{extension}");
    let body = blocking(move || pages::ablation_export(&app, &p, format)).await?;
    Ok(download(content_type, name, body))
}

async fn ablation_csv(State(app): State<App>, Query(p): Query<Params>) -> Page {
    ablation_export(app, p, tables::ExportFormat::Csv, "text/csv; charset=utf-8", "csv").await
}

async fn ablation_md(State(app): State<App>, Query(p): Query<Params>) -> Page {
    ablation_export(app, p, tables::ExportFormat::Markdown, "text/markdown; charset=utf-8", "md").await
}

async fn ablation_tex(State(app): State<App>, Query(p): Query<Params>) -> Page {
    ablation_export(app, p, tables::ExportFormat::Latex, "text/x-tex; charset=utf-8", "tex").await
}

/// Server-sent events: one `change` event whenever the store's change
/// token moves (checked every second, one cheap query), so open pages
/// refresh only when there is something new.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold((app, String::new()), |(app, last)| async move {
        loop {
            let store = app.store.clone();
            let token = tokio::task::spawn_blocking(move || store.change_token().unwrap_or_default())
                .await
                .unwrap_or_default();
            if !last.is_empty() && token != last {
                return Some((Ok(Event::default().event("change").data(token.clone())), (app, token)));
            }
            if last.is_empty() {
                // The first token only sets the baseline.
                return Some((Ok(Event::default().event("ready").data("")), (app, token)));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../assets/style.css")).into_response()
}

async fn live_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../assets/live.js")).into_response()
}

/// Serve the dashboard of the store at `location` on `addr` until stopped.
/// Prints the address it listens on (with the port the OS chose for port 0).
pub fn serve(location: &str, addr: SocketAddr) -> Result<()> {
    let store = Arc::new(Store::open_read_only(location)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        println!("augur dashboard: http://{bound}/ (store {})", store.location);
        if !bound.ip().is_loopback() {
            eprintln!("warning: listening on {bound}, reachable from other machines; the dashboard has no login");
        }
        axum::serve(listener, router(store)).await.context("the server stopped")
    })
}
