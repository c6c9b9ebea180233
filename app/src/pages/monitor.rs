//! `/monitor`: the hub's own health, published every second by the server on a topic.

use super::charts::LineChart;
use crate::{
    api::load_monitor,
    feed::{Feed, use_feed},
    live::{LiveBadge, LiveOptions, use_live},
    model::*,
};
use leptos::prelude::*;

/// Samples kept: three minutes at one a second.
const WINDOW: usize = 180;

#[component]
pub fn MonitorPage() -> impl IntoView {
    let snapshot = Resource::new(|| (), |_| load_monitor());
    view! {
        <h1>"Monitor"</h1>
        <p class="intro">"The hub's health, published every second on " <code>{MONITOR_TOPIC}</code> "."</p>
        {super::loaded(snapshot, "Loading…", |snapshot| view! { <MonitorBoard snapshot/> })}
    }
}

#[component]
fn MonitorBoard(snapshot: MonitorSnapshot) -> impl IntoView {
    let live = use_live(LiveOptions {
        selectors: vec![MONITOR_TOPIC.to_owned()],
        last_event_id: Some(snapshot.last_event_id.clone()),
        capacity: WINDOW,
        ..LiveOptions::default()
    });
    let samples = use_feed(live, snapshot.samples, Feed::oldest_first(WINDOW));
    let series = move |f: fn(&MonitorSample) -> f64| {
        Signal::derive(move || samples.read().iter().map(f).collect::<Vec<_>>())
    };
    let latest = move |f: fn(&MonitorSample) -> String| {
        move || samples.read().last().map(f).unwrap_or_else(|| "–".into())
    };

    view! {
        <p class="room-meta">"Live: " <LiveBadge status=live.status/></p>
        <div class="metrics" id="monitor">
            <Metric id="subscribers" label="Subscribers" value=latest(|s| s.subscribers.to_string())
                chart=series(|s| s.subscribers as f64)/>
            <Metric id="publishes" label="Publishes/s" value=latest(|s| format!("{:.1}", s.publishes_per_s))
                chart=series(|s| s.publishes_per_s)/>
            <Metric id="deliveries" label="Deliveries/s" value=latest(|s| format!("{:.1}", s.deliveries_per_s))
                chart=series(|s| s.deliveries_per_s)/>
            <Metric id="evictions" label="Slow-subscriber evictions" value=latest(|s| s.evictions.to_string())
                chart=series(|s| s.evictions as f64)/>
            <Metric id="history" label="History size" value=latest(|s| s.history.to_string())
                chart=series(|s| s.history as f64)/>
            <Metric id="memory" label="Memory (MiB)" value=latest(|s| format!("{:.1}", s.memory_bytes as f64 / 1048576.0))
                chart=series(|s| s.memory_bytes as f64)/>
            <Metric id="cpu" label="CPU (%)" value=latest(|s| format!("{:.1}", s.cpu_percent))
                chart=series(|s| s.cpu_percent)/>
            <Metric id="uptime" label="Uptime (s)" value=latest(|s| s.uptime_s.to_string())
                chart=series(|s| s.uptime_s as f64)/>
        </div>
    }
}

#[component]
fn Metric(
    id: &'static str,
    label: &'static str,
    value: impl Fn() -> String + Send + Sync + 'static,
    chart: Signal<Vec<f64>>,
) -> impl IntoView {
    view! {
        <section class="metric" id=format!("metric-{id}")>
            <h2>{label}</h2>
            <p class="value">{value}</p>
            <LineChart values=chart label=format!("{label} over the last minutes")/>
        </section>
    }
}
