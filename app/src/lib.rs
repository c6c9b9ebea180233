//! Tidings' user interface: Leptos components and routes.
//!
//! The same code runs twice. On the server (feature `ssr`) it renders each page to HTML, so a
//! page is useful before any WASM arrives. In the browser (feature `hydrate`, through the
//! `tidings-frontend` crate) it attaches to that HTML and keeps it live. Code that touches browser
//! APIs is compiled only with `hydrate`.
//!
//! - [`shell`]: the HTML document around every page (rendered on the server only).
//! - [`counter`]: the home page, the seed's counter stream as a live list.
//! - `event_source` (browser only): a `web_sys::EventSource` bound to the component's lifetime.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    StaticSegment,
    components::{Route, Router, Routes},
};

pub mod counter;
#[cfg(feature = "hydrate")]
mod event_source;

/// The document around the app. The server renders it; the browser only hydrates `<body>`.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                // Notes for visitors without JavaScript are hidden by default and shown by this
                // rule, which only applies when scripting is off. `body` outweighs the stylesheet's
                // own rule, which loads later.
                <noscript>
                    <style>"body .js-note { display: block; } body .js-only { display: none; }"</style>
                </noscript>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The root component: stylesheet, title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="leptos" href="/pkg/tidings.css"/>
        <Title text="Tidings — real-time updates"/>
        <Router>
            <main>
                <Routes fallback=|| view! { <h1>"Page not found"</h1> }>
                    <Route path=StaticSegment("") view=counter::CounterPage/>
                </Routes>
            </main>
        </Router>
    }
}
