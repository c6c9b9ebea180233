//! The Tidings server: one axum router serving the server-rendered pages, the static site and the
//! streaming endpoints.
//!
//! Other crates (the `tidings` binary, the tests) use [`Server`], [`Config`], [`Error`],
//! [`AppState`] (its hub and [`Metrics`]), [`CancellationToken`] and [`shutdown_signal`], and
//! name a few items through the public modules: [`config`] ([`config::JwtAlg`]), [`chat`]
//! ([`chat::BURST`]), [`client_addr`] ([`client_addr::parse_network`]) and [`market`]
//! ([`market::SYMBOLS`]). The other modules are private.
//!
//! - [`config`]: flags and `TIDINGS_*` variables.
//! - [`client_addr`]: the address a request comes from, for per-client limits.
//! - `cors`: which other origins' pages may use the streams and the hub.
//! - `counter_stream`: `GET /web/StreamChat`, the seed's demo stream.
//! - `assets`: the built site's files, precompressed and cached by name; pages compressed.
//! - `edge`: the life of every connection: caps per address and in all, deadlines for heads
//!   and idle time, a new connection's event stream served without hyper's buffers, HTTP/2,
//!   and TLS with its certificate reloaded on SIGHUP.
//! - `mercure`: the Mercure hub at `/.well-known/mercure`.
//! - `metrics`: `/metrics`, and the health probes `/healthz` and `/mercure/health/{ready,live}`.
//! - [`chat`], [`market`], `monitor`: what the live pages need from the server: posting to
//!   chat rooms (and their presence counts), the simulated market, the health samples; their
//!   background tasks run under `supervise`.
//! - this file: the shared state, the router, and [`Server`], which binds, serves and shuts down.
//!
//! Shutdown is explicit because streams never end by themselves: axum's graceful shutdown waits
//! for every open response, and an SSE response stays open until the client leaves. So every
//! stream also ends when the server's [`CancellationToken`] fires, and a grace period bounds the
//! wait for anything else.

// Rendering Leptos views instantiates deeply nested types; release builds need more than the
// default recursion limit to lay them out.
#![recursion_limit = "256"]

mod assets;
pub mod chat;
pub mod client_addr;
pub mod config;
mod cors;
mod counter_stream;
mod edge;
pub mod market;
mod mercure;
mod metrics;
mod monitor;
mod page_tokens;
mod supervise;

pub use config::Config;
pub use metrics::Metrics;

use axum::{Router, extract::FromRef, routing::get};
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::{net::SocketAddr, sync::Arc};
use tidings_app::{App, shell};
use tidings_hub::{History, Hub, HubConfig, RedisHistory, SqliteHistory};
use tokio::net::TcpListener;
pub use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) leptos: LeptosOptions,
    pub metrics: Arc<Metrics>,
    pub hub: Hub,
    pub(crate) auth: Arc<mercure::auth::Auth>,
    pub(crate) cors: Arc<cors::Cors>,
    pub(crate) chat_limiter: Arc<chat::RateLimiter>,
    pub(crate) subscriber_limits: Arc<mercure::limits::SubscriberLimits>,
    /// Open connections, counted against their caps.
    pub(crate) connections: Arc<edge::budget::ConnectionBudget>,
    /// Fires on shutdown; every stream ends when it does.
    pub(crate) shutdown: CancellationToken,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    History(#[from] tidings_hub::HistoryError),
    #[error(transparent)]
    Keys(#[from] mercure::auth::KeyError),
    #[error(transparent)]
    Cors(#[from] cors::MixedOrigins),
    #[error(transparent)]
    Tls(#[from] edge::tls::TlsError),
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    /// With `--tls-cert`: HTTPS.
    tls: Option<Arc<edge::tls::Certificates>>,
}

impl Server {
    /// Binds the configured address. Binding before running lets callers (and tests) learn the
    /// real port when the configured one is 0.
    ///
    /// The configuration is checked first (keys, CORS, the TLS files), so a bad one is refused
    /// before the port is taken.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let auth = mercure::auth::Auth::from_config(&config)?;
        let cors = cors::Cors::new(&config.cors_origins)?;
        let tls = edge::tls::Certificates::from_config(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
        )?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(Error::Serve)?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(addr, tls.is_some()));
        let auth = auth.serving_at(&public_url, &config);
        tracing::info!(
            "Mercure 1.0 tokens name the hub as {}",
            auth.resource().audience
        );
        let leptos = LeptosOptions::builder()
            .output_name("tidings")
            .site_root(config.site_root.to_string_lossy().as_ref())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .hash_files(content_named_site())
            .build();
        if let Some(token) = &auth.generated_token {
            tracing::warn!(
                "no --publisher-jwt-key given: generated a key for this run only. \
                 A token that may publish and subscribe to every topic: {token}"
            );
        }
        let history: Arc<dyn History> = match &config.redis_url {
            Some(url) => {
                let history = RedisHistory::open(url, &config.redis_prefix)?
                    .wait_for_replicas(config.redis_wait_replicas, config.redis_wait_timeout);
                tracing::info!(
                    "history and fan-out through Redis at {}, keys {}*",
                    history.address(),
                    config.redis_prefix
                );
                Arc::new(history)
            }
            None => {
                let history = SqliteHistory::open(&config.data_dir)?;
                tracing::info!("history in {}", history.path().display());
                Arc::new(history)
            }
        };
        let hub = Hub::start(
            history,
            HubConfig {
                subscriber_buffer: config.subscriber_buffer as usize,
                heartbeat: config.heartbeat(),
                history_max_events: config.history_max_events,
                history_max_age: config.history_max_age,
                // The market and the monitor publish every second; kept for ten minutes, they
                // never push chat and news out of the history.
                volatile_topics: vec![
                    ("/ticker/".into(), config.volatile_max_age),
                    (
                        tidings_app::model::MONITOR_TOPIC.into(),
                        config.volatile_max_age,
                    ),
                ],
                max_templates: config.max_templates,
                // What Mercure 1.0's URL patterns, and relative topics, are resolved against.
                hub_url: url::Url::parse(&format!("{public_url}{}", mercure::PATH)).ok(),
                max_stream_lifetime: config.max_stream_lifetime(),
                ..HubConfig::default()
            },
        )?;
        let subscriber_limits = Arc::new(
            mercure::limits::SubscriberLimits::new(
                config.subscribe_rate,
                config.subscribe_burst,
                config.max_subscribers_per_address,
                config.max_subscribers,
            )
            .per_token(config.max_subscribers_per_token),
        );
        let connections = Arc::new(connection_budget(&config));
        let chat_limiter = Arc::new(chat::RateLimiter::new(
            config.chat_burst,
            config.chat_refill,
        ));
        let state = AppState {
            config: Arc::new(config),
            leptos,
            metrics: Arc::default(),
            hub,
            auth: Arc::new(auth),
            cors: Arc::new(cors),
            chat_limiter,
            subscriber_limits,
            connections,
            shutdown: CancellationToken::new(),
        };
        Ok(Self {
            listener,
            state,
            tls,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.state.leptos.site_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel this token to shut the server down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until the shutdown token fires, then ends open streams and returns once every
    /// connection has closed or the grace period has passed, whichever is first.
    pub async fn run(self) -> Result<(), Error> {
        let Self {
            listener,
            state,
            tls,
        } = self;
        let shutdown = state.shutdown.clone();
        let grace = state.config.shutdown_grace();
        let hub = state.hub.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{}", state.leptos.site_addr);
        if let Some(certificates) = &tls {
            tokio::spawn(certificates.clone().reload_on_hangup(shutdown.clone()));
        }
        // On shutdown, hub streams end at once so their connections can close.
        let closing = hub.clone();
        let watcher = shutdown.clone();
        tokio::spawn(async move {
            watcher.cancelled().await;
            closing.close_streams();
        });
        spawn_tasks(&state);
        let config = &state.config;
        let limits = edge::Limits {
            head_timeout: config.head_timeout,
            idle_timeout: config.idle_timeout,
            max_head_bytes: config.max_head_bytes as usize,
            write_timeout: config.write_timeout,
            max_streams: config.max_streams_per_connection,
        };
        let budget = state.connections.clone();
        let edge = edge::Edge::new(
            router(state.clone()),
            STREAM_PATHS,
            limits,
            budget.clone(),
            tls,
            shutdown.clone(),
        );
        tokio::spawn(edge.accept(listener));
        shutdown.cancelled().await;
        tokio::select! {
            () = budget.all_closed() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!("connections still open after {grace:?}; exiting anyway");
            }
        }
        // Commit whatever publishes were accepted before stopping.
        hub.shutdown().await;
        Ok(())
    }
}

/// The public URL when `--public-url` is not given: `http://` (`https://` with TLS) and the
/// bound address, with `localhost` for an unspecified one (`0.0.0.0`, `::`).
fn default_public_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if addr.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}

/// Whether the site was built with cargo-leptos's `hash-files`: then its JS, WASM and CSS are
/// named after their content, and `hash.txt` beside this executable (where cargo-leptos writes
/// it, and Leptos reads it to name them in pages) says the names.
fn content_named_site() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("hash.txt")))
        .is_some_and(|file| file.is_file())
}

/// The connection caps: the configured total, or what the descriptor limit allows.
fn connection_budget(config: &Config) -> edge::budget::ConnectionBudget {
    let descriptors = edge::budget::raise_descriptor_limit();
    let capacity = descriptors.saturating_sub(edge::budget::reserved_descriptors(descriptors));
    let total = match config.max_connections {
        Some(wanted) if wanted > capacity => {
            tracing::warn!(
                "--max-connections {wanted} is more than {descriptors} open files allow; \
                 serving at most {capacity}"
            );
            capacity
        }
        Some(wanted) => wanted,
        None => capacity,
    };
    let total = usize::try_from(total).unwrap_or(usize::MAX).max(1);
    tracing::info!(
        "open-file limit {descriptors}: at most {total} connections, {} per address",
        config.max_connections_per_address
    );
    edge::budget::ConnectionBudget::new(
        config.max_connections_per_address as usize,
        total,
        config.trusted_proxies.clone(),
    )
}

/// The event streams a fresh connection may open without hyper (see [`edge`]).
const STREAM_PATHS: &[&str] = &[mercure::PATH, tidings_app::counter::STREAM_PATH];

/// The server's own background tasks; each ends on shutdown, and is started again if it ends
/// before.
fn spawn_tasks(state: &AppState) {
    use supervise::supervise;
    let config = &state.config;
    let shutdown = state.shutdown.clone();
    let s = state.clone();
    supervise("chat presence", shutdown.clone(), move || {
        chat::presence_task(s.clone())
    });
    let s = state.clone();
    supervise("address sweep", shutdown.clone(), move || {
        client_addr::forget_idle_addresses(s.clone())
    });
    if config.market_interval_ms > 0 {
        let seed = config.market_seed.unwrap_or_else(rand::random);
        tracing::info!("simulated market on, seed {seed}");
        let interval = std::time::Duration::from_millis(config.market_interval_ms);
        let s = state.clone();
        supervise("market", shutdown.clone(), move || {
            market::run(s.clone(), interval, seed)
        });
    }
    if config.monitor_interval_ms > 0 {
        let interval = std::time::Duration::from_millis(config.monitor_interval_ms);
        let s = state.clone();
        supervise("monitor", shutdown, move || {
            monitor::run(s.clone(), interval)
        });
    }
}

/// The whole HTTP surface.
fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let mut streams = Router::new().route(
        tidings_app::counter::STREAM_PATH,
        get(counter_stream::stream),
    );
    if let Some(cors) = state.cors.stream_layer() {
        streams = streams.layer(cors);
    }
    let leptos = state.leptos.clone();
    let hub = state.hub.clone();
    let chat: Arc<dyn tidings_app::api::ChatService> = Arc::new(chat::ChatDesk(state.clone()));
    let page_tokens: Arc<dyn tidings_app::api::PageTokens> =
        Arc::new(page_tokens::PageTokenDesk(state.clone()));
    // Pages advertise the hub, so Mercure clients can discover it from any of them. Server
    // functions find the hub, the chat and the page tokens in their context.
    let pages = Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                leptos::prelude::provide_context(hub.clone());
                leptos::prelude::provide_context(chat.clone());
                leptos::prelude::provide_context(page_tokens.clone());
            },
            move || shell(leptos.clone()),
        )
        .layer(SetResponseHeaderLayer::if_not_present(
            http::header::LINK,
            http::HeaderValue::from_static(mercure::DISCOVERY_LINK),
        ))
        .layer(assets::compression());
    // Anything else is a file of the site, or the 404 page.
    let not_found = axum::handler::Handler::with_state(
        leptos_axum::file_and_error_handler::<AppState, _>(shell),
        state.clone(),
    );
    let files = assets::service(&state.config.site_root, not_found);
    Router::new()
        .merge(streams)
        .merge(mercure::routes(&state))
        .route("/api/chat/{room}", axum::routing::post(chat::post))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(metrics::healthz))
        .route("/mercure/health/ready", get(metrics::ready))
        .route("/mercure/health/live", get(metrics::live))
        .merge(pages)
        .fallback_service(files)
        .with_state(state)
}

/// Milliseconds since the Unix epoch: the timestamps the pages show.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and `kill` send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
