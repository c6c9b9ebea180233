//! What page handlers do in the browser: publishing to the hub (gloo-net) and reading the clock.
//!
//! Event handlers run only in the browser, but the pages that hold them also render on the
//! server. So each function here is what a handler calls, in one line: with `hydrate` it uses the
//! browser's APIs, without it a twin of the same signature does nothing (or uses the server's
//! clock). Pages never hold `cfg` blocks of their own.

/// What a publish to the hub came to: the update's id, or what to show the visitor
/// (`"<status>: <reason>"`, or why the hub could not be reached).
pub type Published = Result<String, String>;

/// Where the pages publish: the hub, as any Mercure publisher does.
const HUB_PATH: &str = "/.well-known/mercure";

/// Publishes `form` (the hub's fields: `topic`, `data`, …) with `token` as the bearer token,
/// then calls `done` with the outcome.
#[cfg(feature = "hydrate")]
pub fn publish(
    token: String,
    form: Vec<(&'static str, String)>,
    done: impl FnOnce(Published) + 'static,
) {
    leptos::task::spawn_local(async move {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        done(match http::post_form(HUB_PATH, &token, &pairs).await {
            Ok(answer) if answer.ok() => Ok(answer.body.trim().to_owned()),
            Ok(answer) => Err(answer.describe()),
            Err(reason) => Err(reason),
        });
    });
}

/// The server's twin: handlers never run there.
#[cfg(not(feature = "hydrate"))]
pub fn publish(
    _token: String,
    _form: Vec<(&'static str, String)>,
    _done: impl FnOnce(Published) + 'static,
) {
    let _ = HUB_PATH;
}

/// Milliseconds since the Unix epoch, by the visitor's clock (the server's, on the server).
pub fn now_ms() -> u64 {
    #[cfg(feature = "hydrate")]
    let now = js_sys::Date::now() as u64;
    #[cfg(not(feature = "hydrate"))]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now
}

#[cfg(feature = "hydrate")]
mod http {
    /// The outcome of a POST: the status and the body (the hub's one-line reason).
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
    fn unreachable(error: impl std::fmt::Display) -> String {
        format!("the server could not be reached ({error})")
    }

    /// POSTs a form to `url`, with a bearer token if given. Failing to build the request or to
    /// reach the server is reported the same way, as unreachable.
    pub async fn post_form(
        url: &str,
        token: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Answer, String> {
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
        let response = request
            .body(body)
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
}
