//! Tidings' user interface: Leptos components and routes.
//!
//! The same code runs twice. On the server (feature `ssr`) it renders each page to HTML, so a
//! page is useful before any WASM arrives. In the browser (feature `hydrate`, through the
//! `tidings-frontend` crate) it attaches to that HTML and keeps it live. Code that touches browser
//! APIs is compiled only with `hydrate`.
//!
//! - [`shell`]: the HTML document around every page (rendered on the server only), and [`App`]:
//!   the layout with its navigation, and the routes.
//! - [`counter`]: the home page, the seed's counter stream as a live list.
//! - [`pages`]: chat, ticker, news, monitor and the hub console.
//! - [`live`]: live data from the hub, written once for every page; [`feed`]: a page's
//!   server-rendered items and its live ones as one list.
//! - [`api`]: server functions giving each page its server-rendered state, and sending to chat.
//! - [`model`]: the data the pages show, and the hub topics it travels on.
//! - `event_source` (browser only): `EventSource` bound to a component's lifetime. `browser`:
//!   what page handlers do in the browser (publishing to the hub), with server-side twins.

// Leptos views are deeply nested types; release builds of the WASM need more than the
// default recursion limit to lay them out.
#![recursion_limit = "256"]

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::{
    ParamSegment, SsrMode, StaticSegment,
    components::{A, Route, Router, Routes},
};

pub mod api;
mod browser;
pub mod counter;
#[cfg(feature = "hydrate")]
mod event_source;
pub mod feed;
pub mod live;
pub mod model;
pub mod pages;

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
                // `/pkg/tidings.<hash>.css` when the site's files are named after their content.
                <leptos_meta::HashedStylesheet options=options.clone() id="leptos"/>
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

/// The root component: title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: `data-hydrated` says the page is live.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <Title text="Tidings — real-time updates"/>
        <Router>
            <header class="top">
                <A href="/" attr:class="brand">"Tidings"</A>
                <nav aria-label="Pages">
                    <A href="/chat">"Chat"</A>
                    <A href="/ticker">"Ticker"</A>
                    <A href="/news">"News"</A>
                    <A href="/monitor">"Monitor"</A>
                    <A href="/console">"Console"</A>
                </nav>
            </header>
            <main data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=|| view! { <h1>"Page not found"</h1> }>
                    <Route path=StaticSegment("") view=counter::CounterPage/>
                    <Route path=StaticSegment("chat") view=pages::chat::ChatIndex/>
                    // Pages with server-rendered state render it completely before sending (async
                    // mode): streamed chunks would need JavaScript to be put in place.
                    <Route path=(StaticSegment("chat"), ParamSegment("room"))
                        view=pages::chat::ChatRoomPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("ticker") view=pages::ticker::TickerPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("news") view=pages::news::NewsPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("monitor") view=pages::monitor::MonitorPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("console") view=pages::console::ConsolePage/>
                </Routes>
            </main>
        </Router>
    }
}
