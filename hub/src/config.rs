//! The hub's tuning, as the server's flags set it.

use std::time::Duration;

/// Tuning of a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events a subscriber's queue holds before the subscriber is disconnected as too slow.
    pub subscriber_buffer: usize,
    /// A comment is sent after this long without an event, to keep proxies from closing idle
    /// streams and to notice dead connections.
    pub heartbeat: Option<Duration>,
    pub history_max_events: u64,
    pub history_max_age: Option<Duration>,
    /// Canonical-topic prefixes whose updates are kept only this long (see
    /// [`Retention`](crate::Retention)).
    pub volatile_topics: Vec<(String, Duration)>,
    /// Publishes waiting for the writer; a publisher waits when it is full.
    pub publish_queue: usize,
    /// Publish subscription events on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`.
    pub subscription_events: bool,
    /// Distinct templates (and URL patterns) the hub holds at most, across every subscription:
    /// what bounds the pattern tests one update can cost, whatever the subscribers send.
    pub max_templates: usize,
    /// The hub's URL: what Mercure 1.0's URL patterns, and relative topics tested against them,
    /// are resolved against. `None`: `http://localhost/.well-known/mercure`.
    pub hub_url: Option<url::Url>,
    /// A subscription's stream ends this long after it opened at the latest (at a random moment
    /// in the last tenth of it, so streams opened together do not all end together), after a
    /// `retry:` field asking the client to come back at once with its last id. Mercure 1.0 asks
    /// for such a limit: a token's `exp` cannot take back a grant from a connection that is
    /// already open, nor a changed grant or a new node reach it. `None`: no limit but the
    /// token's `exp`.
    pub max_stream_lifetime: Option<Duration>,
}

impl HubConfig {
    /// [`HubConfig::hub_url`], or its default.
    pub(crate) fn base_url(&self) -> url::Url {
        self.hub_url.clone().unwrap_or_else(|| {
            url::Url::parse("http://localhost/.well-known/mercure").expect("a valid URL")
        })
    }

    pub(crate) fn prunes_by_age(&self) -> bool {
        self.history_max_age.is_some() || !self.volatile_topics.is_empty()
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 1024,
            heartbeat: Some(Duration::from_secs(15)),
            history_max_events: 100_000,
            history_max_age: None,
            volatile_topics: Vec::new(),
            publish_queue: 16_384,
            subscription_events: true,
            max_templates: 10_000,
            hub_url: None,
            max_stream_lifetime: None,
        }
    }
}
