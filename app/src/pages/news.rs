//! `/news`: a live headline feed, newest first. Publishing needs a publisher token; the form sends
//! it straight to the hub, as any Mercure publisher would.

use crate::{
    api::load_news,
    browser,
    feed::{Feed, use_feed},
    live::{LiveBadge, LiveOptions, use_live},
    model::*,
};
use leptos::prelude::*;

#[component]
pub fn NewsPage() -> impl IntoView {
    let snapshot = Resource::new(|| (), |_| load_news());
    view! {
        <h1>"News"</h1>
        <p class="intro">"Headlines published on the hub topic " <code>{NEWS_TOPIC}</code>
            " appear here at once, newest first."</p>
        {super::loaded(snapshot, "Loading headlines…", |snapshot| view! { <NewsFeed snapshot/> })}
    }
}

#[component]
fn NewsFeed(snapshot: NewsSnapshot) -> impl IntoView {
    let live = use_live(LiveOptions {
        selectors: vec![NEWS_TOPIC.to_owned()],
        last_event_id: Some(snapshot.last_event_id.clone()),
        capacity: 100,
        ..LiveOptions::default()
    });
    let headlines = use_feed(live, snapshot.headlines, Feed::newest_first(50));

    let token = RwSignal::new(String::new());
    let title = RwSignal::new(String::new());
    let link = RwSignal::new(String::new());
    let result = RwSignal::new(None::<(bool, String)>);
    let publish = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let headline = Headline {
            id: String::new(),
            title: title.get_untracked().trim().to_owned(),
            url: Some(link.get_untracked().trim().to_owned()).filter(|u| !u.is_empty()),
            at_ms: browser::now_ms(),
        };
        let data = serde_json::to_string(&headline).unwrap_or_default();
        let form = vec![("topic", NEWS_TOPIC.to_owned()), ("data", data)];
        browser::publish(token.get_untracked(), form, move |outcome| {
            if outcome.is_ok() {
                title.set(String::new());
                link.set(String::new());
            }
            result.set(Some(match outcome {
                Ok(id) => (true, format!("published as {id}")),
                Err(reason) => (false, reason),
            }));
        });
    };

    view! {
        <p class="room-meta">"Live: " <LiveBadge status=live.status/></p>
        <ol id="headlines" class="headlines" aria-live="polite">
            <For each=move || headlines.get() key=|h| h.id.clone() let(h)>
                <li class="headline">
                    {match h.url.clone().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                        Some(url) => view! { <a href=url rel="noopener nofollow">{h.title.clone()}</a> }.into_any(),
                        None => view! { <span>{h.title.clone()}</span> }.into_any(),
                    }}
                </li>
            </For>
        </ol>
        <p class="hint">{move || if headlines.read().is_empty() { "No headlines yet." } else { "" }}</p>
        <details class="publish js-only">
            <summary>"Publish a headline"</summary>
            <form id="news-form" on:submit=publish>
                <label>"Publisher token" <input id="news-token" type="password" required bind:value=token/></label>
                <label>"Headline" <input id="news-title" required maxlength="200" bind:value=title/></label>
                <label>"Link (optional)" <input id="news-url" type="url" bind:value=link/></label>
                <button type="submit">"Publish"</button>
            </form>
            <p id="news-result" role="status" class:error=move || result.get().is_some_and(|r| !r.0)>
                {move || result.get().map(|r| r.1)}
            </p>
        </details>
    }
}
