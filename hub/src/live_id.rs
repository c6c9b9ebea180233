//! The ids of live-only events (subscription events, presence): each carries its own place.
//!
//! A live-only event is never stored, so a client whose last event was one cannot be found in
//! the history. Its id therefore says where it was delivered, its [`Mark`], with a MAC
//! (HMAC-SHA256, truncated to 96 bits) under a key the history keeps: resuming from it needs no
//! table of recent ids (which anyone opening and closing subscriptions could flush), survives a
//! restart, and on a cluster works on every node, since they share the history and its key.
//! An id the hub did not make (tampered with, garbled, or from a history that lost its key)
//! fails the check and gets the gap event.
//!
//! The form is `urn:tidings:live:<position>.<seq>.<tag>`: two decimal numbers and 16 base64url
//! characters, ASCII without spaces, about as long as a `urn:uuid:` id.

use crate::mark::Mark;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every live-only event's id starts with.
pub(crate) const PREFIX: &str = "urn:tidings:live:";

/// Bytes of the MAC kept in an id.
const TAG: usize = 12;

/// The secret a history keeps for its live ids.
pub type LiveIdKey = [u8; 32];

fn mac(key: &LiveIdKey, mark: Mark) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"tidings live id 1\0");
    mac.update(&mark.position.to_be_bytes());
    mac.update(&mark.seq.to_be_bytes());
    mac
}

/// The id of a live-only event delivered at `mark`.
pub(crate) fn make(key: &LiveIdKey, mark: Mark) -> String {
    let tag = mac(key, mark).finalize().into_bytes();
    format!(
        "{PREFIX}{}.{}.{}",
        mark.position,
        mark.seq,
        URL_SAFE_NO_PAD.encode(&tag[..TAG])
    )
}

/// Where the live-only event with this id was delivered, if the hub made the id with `key`.
/// Any other text, however long or strange, is `None`.
pub(crate) fn parse(key: &LiveIdKey, id: &str) -> Option<Mark> {
    let rest = id.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '.');
    let position = number(parts.next()?)?;
    let seq = number(parts.next()?)?;
    let tag = parts.next()?;
    if tag.len() != TAG.div_ceil(3) * 4 {
        return None;
    }
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let mark = Mark { position, seq };
    mac(key, mark).verify_truncated_left(&tag).ok()?;
    Some(mark)
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A new random key.
pub(crate) fn new_key() -> LiveIdKey {
    rand::random()
}

/// The key as text, for a store that keeps text.
pub(crate) fn key_to_hex(key: &LiveIdKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key written by [`key_to_hex`]; `None` for anything else.
pub(crate) fn key_from_hex(text: &str) -> Option<LiveIdKey> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_carries_its_mark_and_only_its_key_verifies_it() {
        let key = new_key();
        let mark = Mark {
            position: 1234,
            seq: 1 << 40 | 7,
        };
        let id = make(&key, mark);
        assert!(id.starts_with(PREFIX));
        assert!(id.len() <= 60 && id.is_ascii() && !id.contains(' '), "{id}");
        assert_eq!(parse(&key, &id), Some(mark));
        assert_eq!(parse(&new_key(), &id), None, "another key");
        let max = Mark {
            position: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(parse(&key, &make(&key, max)), Some(max));
        // Another mark with the same tag, a changed tag, stray text: none verifies.
        let tag = id.rsplit('.').next().unwrap();
        assert_eq!(
            parse(&key, &format!("{PREFIX}1235.{}.{tag}", mark.seq)),
            None
        );
        for bad in [
            "",
            PREFIX,
            "urn:uuid:1",
            &format!("{id}x"),
            &id[..id.len() - 1],
            &format!("{PREFIX}+1234.{}.{tag}", mark.seq),
            &format!("{PREFIX}1234.{}.{tag}.", mark.seq),
            &format!("{PREFIX}99999999999999999999999.1.{tag}"),
            &format!("{PREFIX}1.2.{}", "é".repeat(8)),
        ] {
            assert_eq!(parse(&key, bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_as_hex() {
        let key = new_key();
        assert_eq!(key_from_hex(&key_to_hex(&key)), Some(key));
        assert_eq!(key_from_hex("zz"), None);
        assert_eq!(key_from_hex(&"é".repeat(32)), None);
        assert_eq!(key_from_hex(&"g".repeat(64)), None);
    }
}
