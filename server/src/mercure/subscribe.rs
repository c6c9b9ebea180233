//! `GET /.well-known/mercure`: subscribe to topic selectors and receive an event stream.

use super::{
    caller::Subscriber,
    challenge::Challenge,
    history_unavailable, history_unreachable,
    limits::{LimitError, Slot},
    plain,
};
use crate::{
    AppState,
    client_addr::{ClientIp, retry_after_secs},
};
use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::convert::Infallible;
use tidings_hub::{MatchKind, SelectorRefused, SubscribeError as HubError, SubscribeRequest};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("missing topic: subscribe with ?topic=<selector> (or, Mercure 1.0, ?match=<topic>)")]
    NoTopic,
    #[error(
        "{0:?} is not a matcher this hub supports (match, match_exact, match_urlpattern); \
         parameter names starting with \"match\" are reserved"
    )]
    UnknownMatcher(String),
    #[error(
        "a subscription uses either topic (draft-07) or match parameters (Mercure 1.0), not both"
    )]
    MixedProtocols,
    #[error("the query is longer than {0} bytes")]
    QueryTooLong(usize),
    #[error("the body is longer than {0} bytes")]
    BodyTooLong(usize),
    #[error("a subscription's body must be application/x-www-form-urlencoded")]
    NotAForm,
    #[error("subscribe with GET (or QUERY with a form body); publish with POST")]
    MethodNotAllowed,
    #[error("too many topics (at most {0})")]
    TooManyTopics(u32),
    #[error("too many URI templates or URL patterns among the topics (at most {0})")]
    TooManyTemplates(u32),
    #[error("topic {0:?}: {1}")]
    BadSelector(String, SelectorRefused),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("Last-Event-ID must be UTF-8 text without control characters")]
    BadLastEventId,
    #[error("this hub needs a subscriber token")]
    AnonymousRefused(Challenge),
    #[error("{0}")]
    Hub(#[from] HubError),
}

impl IntoResponse for SubscribeError {
    fn into_response(self) -> Response {
        let status = match &self {
            SubscribeError::Hub(HubError::Storage) => return history_unavailable(),
            SubscribeError::Hub(HubError::Unavailable) => return history_unreachable(),
            SubscribeError::NoTopic
            | SubscribeError::UnknownMatcher(_)
            | SubscribeError::MixedProtocols
            | SubscribeError::TooManyTopics(_)
            | SubscribeError::TooManyTemplates(_)
            | SubscribeError::BadSelector(_, SelectorRefused::Invalid(_))
            | SubscribeError::BadSelector(_, SelectorRefused::BadMatcher(_))
            | SubscribeError::BadLastEventId => StatusCode::BAD_REQUEST,
            SubscribeError::QueryTooLong(_) => StatusCode::URI_TOO_LONG,
            SubscribeError::BodyTooLong(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SubscribeError::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SubscribeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            SubscribeError::BadSelector(_, SelectorRefused::TooManyTemplates)
            | SubscribeError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            SubscribeError::AnonymousRefused(_) => StatusCode::UNAUTHORIZED,
            SubscribeError::Hub(HubError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let retry_after = match &self {
            SubscribeError::Limit(LimitError::TooFast(wait)) => Some(retry_after_secs(*wait)),
            SubscribeError::Limit(_) | SubscribeError::BadSelector(..) => Some(5),
            _ => None,
        };
        let challenge = match &self {
            SubscribeError::AnonymousRefused(challenge) => Some(challenge.clone()),
            _ => None,
        };
        let allow = matches!(self, SubscribeError::MethodNotAllowed);
        let mut response = plain(status, self);
        if let Some(challenge) = challenge {
            response = challenge.apply(response);
        }
        if allow {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, QUERY"),
            );
        }
        if let Some(seconds) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The query parameter asking for a routed subscription (`tidings-route=1`): see
/// [`tidings_hub::ROUTE_EVENT`].
pub const ROUTE_PARAMETER: &str = "tidings-route";

/// Everything cheap comes before anything costly: the query's length, the token (verified by the
/// extractor), the anonymous rule, the client's rate and open-subscription limits (per address,
/// per token, in all), and the number of selectors and templates are all checked before any
/// selector is compiled.
pub async fn subscribe(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    subscriber: Option<Subscriber>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, SubscribeError> {
    serve(state, client, subscriber, headers, query, None).await
}

/// `QUERY /.well-known/mercure` (Mercure 1.0, RFC 10008): the parameters in a form-encoded body,
/// for matcher lists too long for a URL, joined with those of the query component (whose
/// `last_event_id` wins). The body is bounded by `--max-query-bytes` too. Other methods the
/// routes do not name get `405`.
pub async fn subscribe_with_body(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    subscriber: Option<Subscriber>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, SubscribeError> {
    if method.as_str() != "QUERY" {
        return Err(SubscribeError::MethodNotAllowed);
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(SubscribeError::NotAForm);
    }
    let max = state.config.max_query_bytes;
    let body = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| SubscribeError::BodyTooLong(max))?;
    serve(state, client, subscriber, headers, query, Some(body)).await
}

async fn serve(
    state: AppState,
    client: std::net::IpAddr,
    subscriber: Option<Subscriber>,
    headers: HeaderMap,
    query: Option<String>,
    body: Option<Bytes>,
) -> Result<Response, SubscribeError> {
    let config = &state.config;
    let query = query.unwrap_or_default();
    if query.len() > config.max_query_bytes {
        return Err(SubscribeError::QueryTooLong(config.max_query_bytes));
    }
    let (verified, token) = match subscriber {
        Some(Subscriber(verified, token)) => (Some(verified), Some(token)),
        None if state.config.no_anonymous => {
            return Err(SubscribeError::AnonymousRefused(
                state.auth.resource().no_token(),
            ));
        }
        None => (None, None),
    };
    let scope = verified
        .as_ref()
        .and_then(|v| v.subscribe_selectors(&state.hub));

    let mut topics = Vec::new();
    let mut matchers = Vec::new();
    let mut query_last_id = None;
    let mut routed = false;
    let body = body.unwrap_or_default();
    let pairs = form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(&body));
    for (name, value) in pairs {
        match &*name {
            "topic" => topics.push(value.into_owned()),
            "lastEventID" => query_last_id = Some(value.into_owned()),
            // Mercure 1.0's; the first one wins: the query component's over the body's.
            "last_event_id" => {
                query_last_id.get_or_insert_with(|| value.into_owned());
            }
            // Tidings' own: each update is preceded by the indices of the selectors it matches
            // (one connection serving several tabs). Other Mercure clients never send it.
            ROUTE_PARAMETER => routed = value == "1",
            // Mercure 1.0 reserves every name starting with "match", in any case.
            name if name
                .get(..5)
                .is_some_and(|m| m.eq_ignore_ascii_case("match")) =>
            {
                let kind = match name {
                    "match" => Some(MatchKind::Exact),
                    _ => name.strip_prefix("match_").and_then(MatchKind::from_name),
                };
                let kind = kind.ok_or_else(|| SubscribeError::UnknownMatcher(name.to_owned()))?;
                matchers.push((kind, value.into_owned()));
            }
            _ => {}
        }
    }
    // Chosen per request: Mercure 1.0 when it names its matchers, draft-07 otherwise.
    let mercure_1 = !matchers.is_empty();
    if mercure_1 && !topics.is_empty() {
        return Err(SubscribeError::MixedProtocols);
    }
    let count = topics.len() + matchers.len();
    if count == 0 {
        return Err(SubscribeError::NoTopic);
    }
    if count > config.max_selectors as usize {
        return Err(SubscribeError::TooManyTopics(config.max_selectors));
    }
    let templates = topics.iter().filter(|t| t.contains('{')).count()
        + matchers
            .iter()
            .filter(|(kind, text)| *kind == MatchKind::UrlPattern && text != "*")
            .count();
    if templates > config.max_templates_per_subscription as usize {
        return Err(SubscribeError::TooManyTemplates(
            config.max_templates_per_subscription,
        ));
    }
    let own_matchers = topics
        .iter()
        .map(String::as_str)
        .chain(matchers.iter().map(|(_, text)| text.as_str()));
    let payload = verified.as_ref().and_then(|v| v.payload_for(own_matchers));
    let expires_at = verified.as_ref().and_then(|v| v.expires_at());
    let slot: Slot = state.subscriber_limits.admit_with_token(client, token)?;
    let mut selectors = Vec::with_capacity(count);
    for t in topics {
        let parsed = state.hub.parse_selector(&t);
        selectors.push(parsed.map_err(|e| SubscribeError::BadSelector(t, e))?);
    }
    let mut match_types = Vec::with_capacity(matchers.len());
    for (kind, t) in matchers {
        let parsed = state.hub.parse_matcher(kind, &t);
        selectors.push(parsed.map_err(|e| SubscribeError::BadSelector(t, e))?);
        match_types.push(kind);
    }

    // The header (what a reconnecting browser sends) wins over the query parameter. Browsers
    // send the id as UTF-8 (HTAB and non-ASCII are legal in a field value).
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            std::str::from_utf8(value.as_bytes())
                .map_err(|_| SubscribeError::BadLastEventId)?
                .to_owned(),
        ),
        None => query_last_id,
    };
    if last_event_id
        .as_deref()
        .is_some_and(|id| id.chars().any(|c| c.is_control() && c != '\t'))
    {
        return Err(SubscribeError::BadLastEventId);
    }

    let asked_from = last_event_id.is_some();
    let request = SubscribeRequest {
        selectors,
        scope,
        payload,
        last_event_id,
        expires_at,
        routed,
    };
    let subscription = match mercure_1 {
        true => state.hub.subscribe_matchers(request, match_types).await?,
        false => state.hub.subscribe(request).await?,
    };
    // Mercure 1.0 says `earliest` when the id asked for is unknown or gone (draft-07 names the
    // head the stream continues after, as before).
    let header_value = match mercure_1 && subscription.history_gap {
        true => HeaderValue::from_static("earliest"),
        false => HeaderValue::from_bytes(subscription.last_event_id.as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("earliest")),
    };
    // Mercure 1.0's field, set when the request named an id to resume from.
    let resume_field = (mercure_1 && asked_from).then(|| {
        (
            HeaderName::from_static("mercure-last-event-id"),
            header_value.clone(),
        )
    });
    // The slot is held by the body: the subscription counts until its stream is dropped.
    let body = Body::from_stream(subscription.stream.map(move |chunk| {
        let _held = &slot;
        Ok::<_, Infallible>(chunk)
    }));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
            ),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
            (HeaderName::from_static("last-event-id"), header_value),
        ],
        resume_field.map(|field| [field]),
        body,
    )
        .into_response())
}
