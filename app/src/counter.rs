//! The home page: the seed's demo, a server stream of the numbers 1 to 100 shown as a live list.
//!
//! The server half of the protocol lives in the server crate; the constants here are the contract
//! both halves share.

use crate::live::LiveStatus;
use leptos::prelude::*;

/// Where the counter stream is served (the seed's route, kept for parity).
pub const STREAM_PATH: &str = "/web/StreamChat";
/// The last number of the stream. After it the stream ends, and a reconnect that has seen it gets
/// `204 No Content`, which tells the browser to stop.
pub const LAST: u32 = 100;

/// The live list of numbers.
#[component]
pub fn CounterPage() -> impl IntoView {
    let numbers = RwSignal::new(Vec::<u32>::new());
    let status = RwSignal::new(LiveStatus::Connecting);

    #[cfg(feature = "hydrate")]
    {
        let stream = live::connect(numbers, status);
        // Leaving the page (or any other disposal of this component) closes the connection.
        on_cleanup(move || drop(stream));
    }

    view! {
        <h1>"Real-time Updates"</h1>
        <p class="intro">
            "The server counts from 1 to " {LAST} ", one number at a time, over Server-Sent Events. "
            "Tidings does this for real work too: a " <a href="/chat">"chat"</a> ", a "
            <a href="/ticker">"stock ticker"</a> ", " <a href="/news">"news"</a> ", its own "
            <a href="/monitor">"monitor"</a> " and a " <a href="/console">"hub console"</a>
            ", all live through one Mercure hub."
        </p>
        <p class="js-note">"Live updates need JavaScript: enable it to watch the numbers arrive."</p>
        <p class="status js-only" role="status" aria-live="polite">
            "Connection: "
            <span id="status" data-status=move || status.get().as_str()>
                {move || status.get().as_str()}
            </span>
        </p>
        <ul id="messages">
            <For each=move || numbers.get() key=|n| *n let(n)>
                <li>{n}</li>
            </For>
        </ul>
    }
}

#[cfg(feature = "hydrate")]
mod live {
    use super::{LAST, LiveStatus, STREAM_PATH};
    use crate::event_source::{EventStream, ReadyState};
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use std::{cell::Cell, rc::Rc};

    /// Opens the stream and feeds the signals; the returned handle closes it when dropped.
    pub fn connect(
        numbers: RwSignal<Vec<u32>>,
        status: RwSignal<LiveStatus>,
    ) -> SendWrapper<Option<EventStream>> {
        // The highest id shown. The browser resumes after the last id it saw, so duplicates should
        // not arrive, but a list that shows each number once must not depend on that.
        let last_seen = Rc::new(Cell::new(0u32));
        let seen = last_seen.clone();
        let stream = EventStream::open(
            STREAM_PATH,
            move |id, data| {
                let (Ok(id), Ok(n)) = (id.parse::<u32>(), data.parse::<u32>()) else {
                    return;
                };
                if id > seen.get() {
                    seen.set(id);
                    numbers.update(|list| list.push(n));
                }
            },
            move || status.set(LiveStatus::Open),
            move |state| {
                status.set(match state {
                    ReadyState::Connecting => LiveStatus::Reconnecting,
                    // A closed EventSource after the last number can only mean the server's 204.
                    ReadyState::Closed if last_seen.get() >= LAST => LiveStatus::Finished,
                    // The browser gave up: the server refused the stream for another reason.
                    ReadyState::Closed | ReadyState::Open => LiveStatus::Closed,
                })
            },
        );
        if stream.is_none() {
            status.set(LiveStatus::Closed);
        }
        SendWrapper::new(stream)
    }
}
