//! The subscriber tokens the server gives its own pages ([`PageTokens`]): the chat's presence
//! counts are private updates, and a page subscribes to them with such a token, which the live
//! module fetches again before it ends. Signed with the subscriber key (an HS256 secret); with
//! an asymmetric `--jwt-alg` the server holds only public keys, signs nothing, and presence
//! counts are public.

use crate::AppState;
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_app::{api::PageTokens, model::SubscriberToken};

/// The server function's [`PageTokens`].
pub(crate) struct PageTokenDesk(pub AppState);

impl PageTokens for PageTokenDesk {
    fn issue(&self, subscribe: &[&str]) -> Option<SubscriberToken> {
        let state = &self.0;
        let (token, exp) = state
            .auth
            .page_token(subscribe, state.config.page_token_lifetime)?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis();
        let expires_in_ms = (u128::from(exp) * 1000).saturating_sub(now_ms);
        Some(SubscriberToken {
            token,
            expires_in_ms: u64::try_from(expires_in_ms).unwrap_or(u64::MAX),
        })
    }

    fn signs(&self) -> bool {
        self.0.auth.signs_page_tokens()
    }
}
