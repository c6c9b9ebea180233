//! `/ticker`: quotes from the server's simulated market, one topic per symbol, subscribed with a
//! URI-template selector.

use super::charts::LineChart;
use crate::{
    api::load_ticker,
    feed::{Feed, use_feed},
    live::{LiveBadge, LiveOptions, use_live},
    model::*,
};
use leptos::prelude::*;
use std::collections::BTreeMap;

/// Prices kept per symbol for the sparkline.
const HISTORY: usize = 40;

#[component]
pub fn TickerPage() -> impl IntoView {
    let snapshot = Resource::new(|| (), |_| load_ticker());
    view! {
        <h1>"Ticker"</h1>
        <p class="intro">"A simulated market: every symbol is a hub topic, the page subscribes to "
            <code>{TICKER_TEMPLATE}</code> "."</p>
        {super::loaded(snapshot, "Loading quotes…", |snapshot| view! { <TickerBoard snapshot/> })}
    }
}

#[derive(Clone, PartialEq)]
struct Row {
    symbol: String,
    last: Quote,
    prices: Vec<f64>,
    /// Changes with every quote, so the row is re-created and its flash plays again.
    key: String,
}

#[component]
fn TickerBoard(snapshot: TickerSnapshot) -> impl IntoView {
    let live = use_live(LiveOptions {
        selectors: vec![TICKER_TEMPLATE.to_owned()],
        last_event_id: Some(snapshot.last_event_id.clone()),
        capacity: 8 * HISTORY,
        ..LiveOptions::default()
    });
    // Every quote, the snapshot's then the live ones, oldest first; the rows keep the last
    // `HISTORY` of each symbol.
    let quotes = use_feed(live, snapshot.quotes, Feed::oldest_first(usize::MAX));
    let rows = Memo::new(move |_| {
        let mut by_symbol: BTreeMap<String, Vec<Quote>> = BTreeMap::new();
        for quote in quotes.get() {
            let list = by_symbol.entry(quote.symbol.clone()).or_default();
            list.push(quote);
            let excess = list.len().saturating_sub(HISTORY);
            list.drain(..excess);
        }
        by_symbol
            .into_iter()
            .filter_map(|(symbol, quotes)| {
                let last = quotes.last()?.clone();
                Some(Row {
                    key: format!("{symbol}@{}", last.at_ms),
                    prices: quotes.iter().map(|q| q.price).collect(),
                    symbol,
                    last,
                })
            })
            .collect::<Vec<_>>()
    });
    view! {
        <p class="room-meta">"Live: " <LiveBadge status=live.status/></p>
        <table id="ticker" class="ticker">
            <thead><tr><th scope="col">"Symbol"</th><th scope="col">"Price"</th>
                <th scope="col">"Change"</th><th scope="col">"Recent"</th></tr></thead>
            <tbody>
                <For each=move || rows.get() key=|row| row.key.clone() let(row)>
                    <tr class="quote" class:up={row.last.change >= 0.0}
                        class:down={row.last.change < 0.0} data-symbol=row.symbol.clone()>
                        <th scope="row">{row.symbol.clone()}</th>
                        <td class="price">{format!("{:.2}", row.last.price)}</td>
                        <td class="change">{format!("{:+.2}", row.last.change)}</td>
                        <td><LineChart values=Signal::stored(row.prices.clone())
                            label=format!("recent prices of {}", row.symbol) width=120.0 height=28.0/></td>
                    </tr>
                </For>
            </tbody>
        </table>
        <p class="hint">{move || if rows.read().is_empty() { "No quotes yet: the market publishes every second unless it is turned off (--market-interval-ms 0)." } else { "" }}</p>
    }
}
