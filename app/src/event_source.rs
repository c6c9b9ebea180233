//! A `web_sys::EventSource` whose lifetime is a Rust value's.
//!
//! JS callbacks are Rust closures handed to the browser; they must outlive the connection, and the
//! connection must close when the component that opened it goes away (otherwise navigating away
//! leaves a live stream behind). [`EventStream`] owns both: dropping it closes the connection and
//! then releases the callbacks.

use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{Event, EventSource, MessageEvent};

/// The connection state the browser reports with an `error` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// The browser will reconnect by itself (sending `Last-Event-ID`).
    Connecting,
    Open,
    /// The browser has given up: a non-200 answer (such as `204`) or a fatal error.
    Closed,
}

/// A listener for one event type.
type Listener = Closure<dyn FnMut(MessageEvent)>;

/// An open `EventSource` and the callbacks it calls.
pub struct EventStream {
    source: EventSource,
    /// (event type, listener) for every type listened to, `message` included.
    listeners: Vec<(String, Listener)>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl EventStream {
    /// Opens `url`. `on_message` gets each unnamed event's `(lastEventId, data)`.
    pub fn open(
        url: &str,
        mut on_message: impl FnMut(&str, &str) + 'static,
        on_open: impl FnMut() + 'static,
        on_error: impl FnMut(ReadyState) + 'static,
    ) -> Option<Self> {
        Self::open_named(
            url,
            &[],
            move |_, id, data| on_message(id, data),
            on_open,
            on_error,
        )
    }

    /// Opens `url`, listening to unnamed events and to the `named` types. `on_event` gets
    /// `(type, lastEventId, data)`; `on_error` gets the state after the error. `None` if the
    /// browser refused the URL.
    pub fn open_named(
        url: &str,
        named: &[&str],
        on_event: impl FnMut(&str, &str, &str) + 'static,
        mut on_open: impl FnMut() + 'static,
        mut on_error: impl FnMut(ReadyState) + 'static,
    ) -> Option<Self> {
        let source = EventSource::new(url).ok()?;
        let on_event = std::rc::Rc::new(std::cell::RefCell::new(on_event));
        let mut listeners = Vec::new();
        for event_type in std::iter::once("message").chain(named.iter().copied()) {
            let on_event = on_event.clone();
            let listener = Listener::new(move |event: MessageEvent| {
                let data = event.data().as_string().unwrap_or_default();
                (on_event.borrow_mut())(&event.type_(), &event.last_event_id(), &data);
            });
            source
                .add_event_listener_with_callback(event_type, listener.as_ref().unchecked_ref())
                .ok()?;
            listeners.push((event_type.to_owned(), listener));
        }
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| on_open());
        let state_source = source.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            on_error(match state_source.ready_state() {
                EventSource::CONNECTING => ReadyState::Connecting,
                EventSource::OPEN => ReadyState::Open,
                _ => ReadyState::Closed,
            })
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        Some(Self {
            source,
            listeners,
            _on_open: on_open,
            _on_error: on_error,
        })
    }

    /// Closes the connection; the callbacks stay until the value is dropped.
    pub fn close(&self) {
        self.source.close();
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.source.close();
        for (event_type, listener) in &self.listeners {
            let _ = self
                .source
                .remove_event_listener_with_callback(event_type, listener.as_ref().unchecked_ref());
        }
        self.source.set_onopen(None);
        self.source.set_onerror(None);
    }
}
