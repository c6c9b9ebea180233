//! The browser entry point. cargo-leptos compiles this crate to WASM; the script that
//! `HydrationScripts` puts in every page calls [`hydrate`] once the module has loaded.

// Leptos views are deeply nested types; release builds of the WASM need more than the
// default recursion limit to lay them out.
#![recursion_limit = "256"]

use wasm_bindgen::prelude::wasm_bindgen;

/// Attaches the reactive app to the HTML the server rendered, without re-rendering it.
#[wasm_bindgen]
pub fn hydrate() {
    // Panics become readable console errors instead of "unreachable executed".
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(tidings_app::App);
}
