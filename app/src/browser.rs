//! Small browser helpers for the pages: posting with gloo-net and remembering values in
//! `localStorage`. Browser-only (feature `hydrate`).

/// The outcome of a POST: the status and the body (the hub's or the server's one-line reason).
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// What to show a visitor: `"<status>: <reason>"` for errors.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.status, self.body.trim())
    }
}

/// Why a request did not even get an answer.
pub fn unreachable(error: impl std::fmt::Display) -> String {
    format!("the server could not be reached ({error})")
}

/// POSTs a form to `url`, with a bearer token if given.
pub async fn post_form(url: &str, token: &str, pairs: &[(&str, &str)]) -> Result<Answer, String> {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = gloo_net::http::Request::post(url)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if !token.trim().is_empty() {
        request = request.header("Authorization", &format!("Bearer {}", token.trim()));
    }
    send(request.body(body)).await
}

/// POSTs JSON to `url`.
pub async fn post_json<T: serde::Serialize>(url: &str, value: &T) -> Result<Answer, String> {
    send(gloo_net::http::Request::post(url).json(value)).await
}

/// Sends a built request and reads the answer; failing to build or to reach the server is
/// reported the same way, as unreachable.
async fn send(request: Result<gloo_net::http::Request, gloo_net::Error>) -> Result<Answer, String> {
    let response = request
        .map_err(unreachable)?
        .send()
        .await
        .map_err(unreachable)?;
    Ok(Answer {
        status: response.status(),
        body: response.text().await.unwrap_or_default(),
    })
}

fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value)
        .as_string()
        .unwrap_or_default()
}

pub fn load(key: &str) -> Option<String> {
    web_sys::window()?
        .local_storage()
        .ok()??
        .get_item(key)
        .ok()?
}

pub fn store(key: &str, value: &str) {
    if let Some(Ok(Some(storage))) = web_sys::window().map(|w| w.local_storage()) {
        let _ = storage.set_item(key, value);
    }
}
