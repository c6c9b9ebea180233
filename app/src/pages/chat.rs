//! `/chat` and `/chat/{room}`: chat rooms. Messages render on the server (the last 50), then
//! arrive live in every open window; posting goes through the server, which validates, limits
//! the rate and publishes on the room's topic.

use crate::{
    api::load_chat,
    live::{LiveBadge, LiveOptions, use_live},
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
        ..LiveOptions::default()
    });
    let initial = snapshot.messages;
    let messages = Memo::new(move |_| {
        let mut all = initial.clone();
        for event in live
            .events
            .read()
            .iter()
            .filter(|e| e.event_type == "message")
        {
            if let Ok(mut message) = serde_json::from_str::<ChatMessage>(&event.data) {
                message.id = event.id.clone();
                all.push(message);
            }
        }
        let excess = all.len().saturating_sub(200);
        all.drain(..excess);
        all
    });
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

    let name = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Some(saved) = crate::browser::load("tidings.name") {
            name.set(saved);
        }
    });

    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let post = ChatPost {
                name: name.get_untracked(),
                text: text.get_untracked(),
            };
            let url = format!("/api/chat/{}", room_url(&room));
            crate::browser::store("tidings.name", post.name.trim());
            sending.set(true);
            leptos::task::spawn_local(async move {
                let answer = crate::browser::post_json(&url, &post).await;
                sending.set(false);
                match answer {
                    Ok(answer) if answer.ok() => {
                        text.set(String::new());
                        error.set(None);
                    }
                    // The typed text stays, so nothing is lost; the reason is shown.
                    Ok(answer) => error.set(Some(answer.describe())),
                    Err(reason) => error.set(Some(reason)),
                }
            });
        }
    };
    #[cfg(not(feature = "hydrate"))]
    let _ = (&room, sending);

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
        <form class="chat-form js-only" on:submit=send>
            <label>"Name" <input id="chat-name" required maxlength=NAME_MAX bind:value=name/></label>
            <label class="grow">"Message"
                <input id="chat-text" required autocomplete="off" bind:value=text/>
            </label>
            <button type="submit" disabled=move || sending.get()>"Send"</button>
        </form>
        <p id="chat-error" class="error" role="alert">{move || error.get()}</p>
        <p class="js-note">"Sending and live messages need JavaScript."</p>
    }
}

#[cfg(feature = "hydrate")]
fn room_url(room: &str) -> String {
    js_sys::encode_uri_component(room)
        .as_string()
        .unwrap_or_default()
}
