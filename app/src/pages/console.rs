//! `/console`: a hub console in the spirit of Mercure's debug UI. Subscribe to any selectors
//! (with a token if needed), watch events arrive, and publish test updates.

use crate::{
    browser,
    live::{Credential, LiveBadge, LiveOptions, use_live},
};
use leptos::prelude::*;

#[component]
pub fn ConsolePage() -> impl IntoView {
    view! {
        <h1>"Hub console"</h1>
        <p class="intro">"Subscribe to selectors and publish test updates on this hub."</p>
        <p class="js-note">"The console needs JavaScript."</p>
        <div class="console js-only">
            <ConsoleSubscribe/>
            <ConsolePublish/>
        </div>
    }
}

/// The subscribe form and the events it receives.
#[component]
fn ConsoleSubscribe() -> impl IntoView {
    let selectors = RwSignal::new(String::from("*"));
    let sub_token = RwSignal::new(String::new());
    let page_token = RwSignal::new(false);
    let last_id = RwSignal::new(String::new());
    let active = RwSignal::new(None::<LiveOptions>);
    let subscribe = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let list: Vec<String> = selectors
            .get_untracked()
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // Clear first, so the previous subscription is closed before the next opens.
        active.set(None);
        active.set(Some(LiveOptions {
            selectors: list,
            last_event_id: Some(last_id.get_untracked()).filter(|s| !s.trim().is_empty()),
            credential: if page_token.get_untracked() {
                Credential::Page
            } else {
                Credential::Token(sub_token.get_untracked())
            },
            capacity: 200,
            keep_on_gap: true,
            alone: true,
            ..LiveOptions::default()
        }));
    };

    view! {
            <section>
                <h2>"Subscribe"</h2>
                <form id="console-subscribe" on:submit=subscribe>
                    <label>"Selectors (one per line)" <textarea id="sub-selectors" rows="3" bind:value=selectors></textarea></label>
                    <label>"Subscriber token (optional; used until its exp)" <input id="sub-token" type="password" bind:value=sub_token/></label>
                    <label class="inline"><input id="sub-page-token" type="checkbox" bind:checked=page_token/>
                        " Or this app's page token (the chat rooms' presence; renewed before it ends)"</label>
                    <label>"Last event id (optional, or earliest)" <input id="sub-last-id" bind:value=last_id/></label>
                    <button type="submit">"Subscribe"</button>
                </form>
                {move || active.get().map(|options| view! { <ConsoleStream options/> })}
            </section>
    }
}

/// The publish form and the hub's answer.
#[component]
fn ConsolePublish() -> impl IntoView {
    let topics = RwSignal::new(String::from("https://example.com/books/1"));
    let data = RwSignal::new(String::new());
    let private = RwSignal::new(false);
    let id = RwSignal::new(String::new());
    let event_type = RwSignal::new(String::new());
    let retry = RwSignal::new(String::new());
    let pub_token = RwSignal::new(String::new());
    let result = RwSignal::new(None::<(bool, String)>);
    let publish = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut form: Vec<(&str, String)> = topics
            .get_untracked()
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| ("topic", t.to_owned()))
            .collect();
        form.push(("data", data.get_untracked()));
        for (name, value) in [("id", id), ("type", event_type), ("retry", retry)] {
            let value = value.get_untracked();
            if !value.trim().is_empty() {
                form.push((name, value.trim().to_owned()));
            }
        }
        if private.get_untracked() {
            form.push(("private", "on".to_owned()));
        }
        browser::publish(pub_token.get_untracked(), form, move |outcome| {
            result.set(Some(match outcome {
                Ok(id) => (true, format!("200: published {id}")),
                Err(reason) => (false, reason),
            }));
        });
    };

    view! {
            <section>
                <h2>"Publish"</h2>
                <form id="console-publish" on:submit=publish>
                    <label>"Topics (one per line)" <textarea id="pub-topics" rows="2" bind:value=topics></textarea></label>
                    <label>"Data" <textarea id="pub-data" rows="3" bind:value=data></textarea></label>
                    <label class="inline"><input id="pub-private" type="checkbox" bind:checked=private/> " Private"</label>
                    <div class="row">
                        <label>"Id" <input id="pub-id" bind:value=id/></label>
                        <label>"Type" <input id="pub-type" bind:value=event_type/></label>
                        <label>"Retry (ms)" <input id="pub-retry" bind:value=retry/></label>
                    </div>
                    <label>"Publisher token" <input id="pub-token" type="password" bind:value=pub_token/></label>
                    <button type="submit">"Publish"</button>
                </form>
                <p id="pub-result" role="status" class:error=move || result.get().is_some_and(|r| !r.0)>
                    {move || result.get().map(|r| r.1)}
                </p>
            </section>
    }
}

#[component]
fn ConsoleStream(options: LiveOptions) -> impl IntoView {
    let live = use_live(options);
    view! {
        <p>"Subscription: " <LiveBadge status=live.status/></p>
        <table id="console-events" class="events">
            <thead><tr><th scope="col">"Time"</th><th scope="col">"Id"</th><th scope="col">"Type"</th><th scope="col">"Data"</th></tr></thead>
            <tbody>
                {move || live.events.get().into_iter().rev().map(|e| view! {
                    <tr class="event">
                        <td>{format_time(e.received_ms)}</td>
                        <td class="id">{e.id}</td>
                        <td class="type">{e.event_type}</td>
                        <td class="data"><pre>{e.data}</pre></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

fn format_time(ms: f64) -> String {
    let s = (ms / 1000.0) as u64;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}
