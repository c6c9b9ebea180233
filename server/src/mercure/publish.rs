//! `POST /.well-known/mercure`: publish an update.

use super::{
    auth::TokenSource,
    caller::Publisher,
    challenge::{BearerError, Challenge},
    history_unavailable, history_unreachable, plain,
};
use crate::{AppState, cors::Cors};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use std::time::Instant;
use tidings_hub::{NewUpdate, PublishError as HubError, Update, UpdateError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the body must be application/x-www-form-urlencoded")]
    NotAForm,
    #[error("retry must be a whole number of milliseconds (digits only)")]
    BadRetry,
    #[error(transparent)]
    Invalid(#[from] UpdateError),
    #[error("publishing needs a token")]
    NoToken(Challenge),
    #[error("the token's mercure.publish claim does not allow topic {0:?}")]
    TopicNotAllowed(String),
    #[error("the token does not grant publish on topic {0:?}")]
    NotGranted(String, Challenge),
    #[error("cookie-authenticated requests must come from an allowed origin")]
    CrossSite,
    #[error("{0}")]
    Hub(#[from] HubError),
}

impl IntoResponse for PublishError {
    fn into_response(self) -> Response {
        let status = match &self {
            PublishError::Hub(HubError::Storage) => return history_unavailable(),
            PublishError::Hub(HubError::Unavailable) => return history_unreachable(),
            PublishError::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PublishError::BadRetry | PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
            PublishError::NoToken(_) => StatusCode::UNAUTHORIZED,
            PublishError::TopicNotAllowed(_)
            | PublishError::NotGranted(..)
            | PublishError::CrossSite => StatusCode::FORBIDDEN,
            PublishError::Hub(HubError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let challenge = match &self {
            PublishError::NoToken(challenge) | PublishError::NotGranted(_, challenge) => {
                Some(challenge.clone())
            }
            _ => None,
        };
        let response = plain(status, self);
        match challenge {
            Some(challenge) => challenge.apply(response),
            None => response,
        }
    }
}

pub async fn publish(
    State(state): State<AppState>,
    publisher: Option<Publisher>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PublishError> {
    let resource = state.auth.resource();
    let Publisher(verified) =
        publisher.ok_or_else(|| PublishError::NoToken(resource.no_token()))?;
    if verified.source == TokenSource::Cookie && !same_or_allowed_origin(&headers, &state.cors) {
        return Err(PublishError::CrossSite);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(PublishError::NotAForm);
    }
    let update = parse_body(&body)?;
    let allowed = verified.publish_selectors(&state.hub).unwrap_or_default();
    if let Some(topic) = update
        .topics()
        .find(|t| !allowed.iter().any(|s| s.matches(t)))
    {
        return Err(if verified.is_access_token() {
            PublishError::NotGranted(
                topic.to_owned(),
                resource.refused(BearerError::InsufficientScope),
            )
        } else {
            PublishError::TopicNotAllowed(topic.to_owned())
        });
    }

    let started = Instant::now();
    let id = update.id().to_owned();
    state.hub.publish(update).await?;
    state.metrics.publish_latency.observe(started.elapsed());
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response())
}

/// The update a form body describes: the one place a publisher's fields become an [`Update`].
fn parse_body(body: &[u8]) -> Result<Update, PublishError> {
    let form: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(parse_form(form)?.parse()?)
}

/// The form's fields as an update, not yet checked: the first of each single field counts.
fn parse_form(form: Vec<(String, String)>) -> Result<NewUpdate, PublishError> {
    let mut update = NewUpdate::default();
    let mut data = None;
    for (name, value) in form {
        match name.as_str() {
            "topic" => update.topics.push(value),
            "data" if data.is_none() => data = Some(value),
            "private" => update.private = true,
            "id" if update.id.is_none() => update.id = Some(value),
            "type" if update.event_type.is_none() && !value.is_empty() => {
                update.event_type = Some(value)
            }
            "retry" if update.retry.is_none() => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PublishError::BadRetry);
                }
                update.retry = Some(value.parse().map_err(|_| PublishError::BadRetry)?);
            }
            _ => {}
        }
    }
    update.data = data.unwrap_or_default();
    Ok(update)
}

/// For cookie-authenticated requests: the `Origin` (or else the `Referer`'s origin) must be this
/// hub's own or an exact CORS origin (`*` allows no credentials). Browsers send cookies with
/// cross-site form posts, so without this check any site could publish with a visitor's cookie.
fn same_or_allowed_origin(headers: &HeaderMap, cors: &Cors) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let referer: axum::http::Uri =
                headers.get(header::REFERER)?.to_str().ok()?.parse().ok()?;
            Some(format!(
                "{}://{}",
                referer.scheme_str()?,
                referer.authority()?
            ))
        });
    let Some(origin) = origin else { return false };
    let origin = origin.to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if let Some(host) = host
        && (origin == format!("http://{host}") || origin == format!("https://{host}"))
    {
        return true;
    }
    cors.allows_credentials_from(&origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Form bodies built from the fields that matter, with values full of what breaks SSE
    /// (CR, LF, NUL, `#`, `:`) and of percent-escapes, plus raw arbitrary bytes.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::sample::select(vec![
            "topic", "data", "id", "type", "retry", "private", "x", "",
        ]);
        let value = prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "/",
                "#",
                ":",
                " ",
                "\r",
                "\n",
                "\r\n",
                "\0",
                "%0A",
                "%0D",
                "%00",
                "%",
                "%G",
                "+",
                "&",
                "=",
                "9",
                "99999999999999999999999",
                "é",
                "/.well-known/mercure",
                "{x}",
            ]),
            0..8,
        )
        .prop_map(|parts| parts.concat());
        let field = (name, value).prop_map(|(n, v)| format!("{n}={v}"));
        prop_oneof![
            prop::collection::vec(field, 0..12).prop_map(|f| f.join("&").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..256),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100_000, ..ProptestConfig::default() })]

        /// Whatever the body, parsing never panics, and an accepted update encodes to exactly
        /// one SSE event: no field can smuggle a line break, so nothing can split it or add
        /// fields.
        #[test]
        fn any_body_parses_or_is_refused_and_never_splits_an_event(body in bodies()) {
            if let Ok(update) = parse_body(&body) {
                let bytes = update.encode();
                let text = std::str::from_utf8(&bytes).expect("SSE is UTF-8");
                prop_assert!(text.ends_with("\n\n"));
                let event = &text[..text.len() - 2];
                // A NUL in data is just a character to SSE; in an id, browsers would drop the id.
                prop_assert!(!event.contains('\r') && !event.contains("\n\n"));
                for line in event.split('\n') {
                    let field = line.split(':').next().unwrap_or_default();
                    prop_assert!(["id", "event", "retry", "data"].contains(&field), "{line:?}");
                    prop_assert!(field == "data" || !line.contains('\0'), "{line:?}");
                }
                prop_assert!(!update.id().starts_with('#'));
                prop_assert!(update.topics().all(|t| !t.is_empty()));
            }
        }
    }
}
