//! `/chat` and `/chat/{room}`: chat rooms. Messages render on the server (the last 50), then
//! arrive live in every open window. Sending is a server function (`send_chat`) behind an
//! `ActionForm`, so it works before the WASM has loaded and without JavaScript at all; the server
//! validates, limits the rate and publishes on the room's topic.

use crate::{
    api::{SendChat, load_chat},
    feed::{Feed, use_feed},
    live::{Credential, LiveBadge, LiveOptions, use_live},
    model::*,
};
use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_params_map};

/// `/chat`: the rooms.
#[component]
pub fn ChatIndex() -> impl IntoView {
    view! {
        <h1>"Chat"</h1>
        <p class="intro">"Pick a room. Messages appear in every open window as they are sent."</p>
        <ul class="rooms">
            {ROOMS.iter().map(|room| view! {
                <li><A href=format!("/chat/{room}")>"#" {*room}</A></li>
            }).collect_view()}
        </ul>
    }
}

/// `/chat/{room}`.
#[component]
pub fn ChatRoomPage() -> impl IntoView {
    let params = use_params_map();
    let room = move || params.read().get("room").unwrap_or_default();
    let snapshot = Resource::new(room, load_chat);
    view! {
        <h1>"#" {room}</h1>
        {super::loaded(snapshot, "Loading the room…", move |snapshot| view! { <ChatRoom room=room() snapshot/> })}
    }
}

#[component]
fn ChatRoom(room: String, snapshot: ChatSnapshot) -> impl IntoView {
    let live = use_live(LiveOptions {
        selectors: vec![chat_topic(&room), presence_topic(&room)],
        last_event_id: Some(snapshot.last_event_id.clone()),
        named: vec![PRESENCE_EVENT],
        // Presence counts are never stored: resuming after one needs the last message's id.
        live_only: vec![PRESENCE_EVENT],
        capacity: 200,
        // Presence counts are private when the server signs page tokens.
        credential: if snapshot.private_presence {
            Credential::Page
        } else {
            Credential::None
        },
        ..LiveOptions::default()
    });
    let messages = use_feed(
        live,
        snapshot.messages,
        Feed::oldest_first(200).only("message"),
    );
    let initial_present = snapshot.present;
    let present = Memo::new(move |_| {
        live.events
            .read()
            .iter()
            .rev()
            .find(|e| e.event_type == PRESENCE_EVENT)
            .and_then(|e| serde_json::from_str::<Presence>(&e.data).ok())
            .map_or(initial_present, |p| p.present)
    });

    // The form posts to the server function, with or without JavaScript (then the server
    // answers with a redirect back here, the reason of a refusal in the address).
    let send = ServerAction::<SendChat>::new();
    let remembered = snapshot.remembered_name;
    let name = RwSignal::new(remembered.clone());
    let text = RwSignal::new(String::new());
    // A sent message clears the text; a refused one keeps it, so nothing is lost.
    Effect::new(move |_| {
        if send.value().with(|sent| matches!(sent, Some(Ok(())))) {
            text.set(String::new());
        }
    });
    let error = move || {
        send.value()
            .get()
            .and_then(Result::err)
            .map(|e| e.to_string())
    };

    view! {
        <p class="room-meta">
            <span id="presence">{move || present.get()}</span>
            {move || if present.get() == 1 { " person here" } else { " people here" }}
            " · " <LiveBadge status=live.status/>
        </p>
        <ol id="chat-log" class="chat-log" aria-live="polite">
            <For each=move || messages.get() key=|m| m.id.clone() let(m)>
                <li class="message">
                    <span class="who">{m.name}</span>
                    <span class="text">{m.text}</span>
                </li>
            </For>
        </ol>
        <ActionForm action=send attr:class="chat-form">
            <input type="hidden" name="room" value=room/>
            <label>"Name"
                <input id="chat-name" name="name" required maxlength=NAME_MAX value=remembered
                    bind:value=name/>
            </label>
            <label class="grow">"Message"
                <input id="chat-text" name="text" required autocomplete="off" bind:value=text/>
            </label>
            <button type="submit" disabled=move || send.pending().get()>"Send"</button>
        </ActionForm>
        <p id="chat-error" class="error" role="alert">{error}</p>
        <p class="js-note">"Live messages need JavaScript: without it, reload to see new ones."</p>
    }
}
