//! One module per page (the counter page lives in [`crate::counter`]).

pub mod charts;
pub mod chat;
pub mod console;
pub mod monitor;
pub mod news;
pub mod ticker;

use leptos::prelude::*;

/// A page's server-rendered part: `render` of the snapshot once `resource` has it, its error
/// otherwise. (Data pages render in async SSR mode, so without JavaScript the page arrives
/// complete, never as the loading placeholder.)
pub fn loaded<T, V>(
    resource: Resource<Result<T, ServerFnError>>,
    loading: &'static str,
    render: impl Fn(T) -> V + Clone + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Suspense fallback=move || view! { <p>{loading}</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match resource.await {
                        Ok(value) => render(value).into_any(),
                        Err(error) => view! { <p class="error">{error.to_string()}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}
