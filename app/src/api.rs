//! Server functions: each page's server-rendered state, read from the hub in-process.
//!
//! During SSR they run directly; their results travel to the browser inside the page, so
//! hydration does not call them again. After client-side navigation the browser calls them over
//! HTTP. Each snapshot carries the id to subscribe from (see [`crate::live`]).

use crate::model::*;
use leptos::{prelude::*, server};

#[cfg(feature = "ssr")]
mod hub {
    use leptos::prelude::*;
    use tidings_hub::{Hub, Selector, Snapshot};

    pub fn get() -> Result<Hub, ServerFnError> {
        use_context::<Hub>().ok_or_else(|| ServerFnError::new("the hub is not available"))
    }

    pub async fn snapshot(
        selector: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<Snapshot, ServerFnError> {
        let selector = Selector::parse(selector).map_err(|e| ServerFnError::new(e.to_string()))?;
        get()?
            .snapshot(vec![selector], limit, max_scan)
            .await
            .map_err(|error| {
                // Its text holds SQLite's messages and paths: logged here, not shown in the page.
                tracing::error!("{error}");
                ServerFnError::new("the history is unavailable")
            })
    }

    /// Parses each update's JSON data, giving it the update's id; skips what does not parse.
    pub fn parse<T: serde::de::DeserializeOwned>(
        snapshot: &Snapshot,
        with_id: impl Fn(&mut T, &str),
    ) -> Vec<T> {
        snapshot
            .updates
            .iter()
            .filter_map(|u| {
                let mut item: T = serde_json::from_str(u.data()).ok()?;
                with_id(&mut item, u.id());
                Some(item)
            })
            .collect()
    }
}

/// How many subscribers a chat room has now (its presence count), on every node; `0` when
/// the other nodes cannot be asked (the live presence event corrects it).
#[cfg(feature = "ssr")]
pub async fn room_presence(hub: &tidings_hub::Hub, room: &str) -> usize {
    let topic = chat_topic(room);
    hub.subscriber_counts(&topic.clone(), move |t| t == topic)
        .await
        .ok()
        .and_then(|counts| counts.first().map(|(_, n)| *n))
        .unwrap_or(0)
}

#[server]
pub async fn load_chat(room: String) -> Result<ChatSnapshot, ServerFnError> {
    if !valid_room(&room) {
        return Err(ServerFnError::new(
            "a room name is 1 to 32 of a-z, 0-9 and -",
        ));
    }
    let snapshot = hub::snapshot(&chat_topic(&room), 50, 20_000).await?;
    Ok(ChatSnapshot {
        messages: hub::parse(&snapshot, |m: &mut ChatMessage, id| m.id = id.to_owned()),
        present: room_presence(&hub::get()?, &room).await,
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_ticker() -> Result<TickerSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(TICKER_TEMPLATE, 8 * 40, 5_000).await?;
    Ok(TickerSnapshot {
        quotes: hub::parse(&snapshot, |_: &mut Quote, _| {}),
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_news() -> Result<NewsSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(NEWS_TOPIC, 20, 50_000).await?;
    let mut headlines = hub::parse(&snapshot, |h: &mut Headline, id| h.id = id.to_owned());
    headlines.reverse();
    Ok(NewsSnapshot {
        headlines,
        last_event_id: snapshot.last_event_id,
    })
}

#[server]
pub async fn load_monitor() -> Result<MonitorSnapshot, ServerFnError> {
    let snapshot = hub::snapshot(MONITOR_TOPIC, 180, 5_000).await?;
    Ok(MonitorSnapshot {
        samples: hub::parse(&snapshot, |_: &mut MonitorSample, _| {}),
        last_event_id: snapshot.last_event_id,
    })
}
