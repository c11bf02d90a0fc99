//! Keyed hashes: what dcm shows or stores about secret material, and what binds a saved
//! plan to its inputs and signs it.
//!
//! A plain sha256 of a low-entropy value (a 4-digit PIN) is reversed by trying every
//! value; an HMAC-SHA256 under a random key that is never shown is not. The key is the
//! state's `secrets_hmac_key` (random, 256 bits, kept in the state only), or before a
//! state exists, one derived from `DCM_PLAN_KEY` when that is set. Without either key,
//! nothing about a secret value is shown at all.

use sha2::{Digest, Sha256};

/// The environment variable that holds the key saved plans are signed with.
pub const PLAN_KEY_ENV: &str = "DCM_PLAN_KEY";

/// The prefix of a keyed object hash (`hmac-sha256:<64 hex>`).
pub const KEYED_PREFIX: &str = "hmac-sha256:";

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares without an early exit (for MACs).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key derived from `key` for one purpose, so one key never serves two.
pub fn derive(key: &[u8], purpose: &str) -> Vec<u8> {
    hmac_sha256(key, format!("dcm key\0{purpose}").as_bytes()).to_vec()
}

/// `DCM_PLAN_KEY`, when set and not empty.
pub fn plan_key_from_env() -> Option<Vec<u8>> {
    std::env::var_os(PLAN_KEY_ENV)
        .filter(|v| !v.is_empty())
        .map(|v| v.as_encoded_bytes().to_vec())
}

/// The key secret fingerprints and a saved plan's input binding are made with: the
/// state's key; before a state exists (or in a state without one), one derived from
/// `DCM_PLAN_KEY`; else none.
pub fn fingerprint_key(state: Option<&crate::state::State>) -> Option<Vec<u8>> {
    state
        .and_then(|s| s.secrets_hmac_key.bytes())
        .or_else(|| plan_key_from_env().map(|k| derive(&k, "secret fingerprints")))
}

/// The keyed hash that stands for an object holding secret data, given its plain sha256:
/// `hmac-sha256:<hex>`.
pub fn seal_sha(plain: &str, key: &[u8]) -> String {
    let mac = hmac_sha256(key, format!("dcm object\0{plain}").as_bytes());
    format!("{KEYED_PREFIX}{}", hex::encode(mac))
}

/// The hash a state records for object `id` whose plain sha256 is `plain`: keyed for a
/// Secret (with the state's key), plain for everything else.
pub fn for_state(id: &crate::object::ObjRef, plain: String, key: Option<&[u8]>) -> String {
    match key {
        Some(k) if id.is_secret() && !plain.starts_with(KEYED_PREFIX) => seal_sha(&plain, k),
        _ => plain,
    }
}

/// Whether `recorded` (a state's hash: plain, or keyed with `key`) is the hash of the
/// object whose plain sha256 is `plain`.
pub fn recorded_matches(recorded: &str, plain: &str, key: Option<&[u8]>) -> bool {
    if recorded.starts_with(KEYED_PREFIX) {
        key.is_some_and(|k| constant_time_eq(seal_sha(plain, k).as_bytes(), recorded.as_bytes()))
    } else {
        recorded == plain
    }
}

/// What is shown for a plain hash of an object that holds secret data: keyed with `key`,
/// or nothing without one.
pub fn seal_opt(plain: &Option<String>, key: Option<&[u8]>) -> Option<String> {
    match (plain, key) {
        (Some(p), Some(k)) if !p.starts_with(KEYED_PREFIX) => Some(seal_sha(p, k)),
        (Some(p), _) if p.starts_with(KEYED_PREFIX) => Some(p.clone()),
        _ => None,
    }
}

/// The text `redact` puts for a secret value, up to its short hash.
const REDACTED: &str = "(sensitive, sha256:";

/// Replaces, in `text`, every short hash `redact` put for a secret value by a keyed one
/// (`(sensitive, hmac:<12 hex>)`), or without a key by a number that only tells the values
/// apart within this object (`(sensitive, value 1)`); `seen` keeps the numbering.
pub fn seal_text(text: &str, key: Option<&[u8]>, seen: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(REDACTED) {
        out.push_str(&rest[..i]);
        let after = &rest[i + REDACTED.len()..];
        let hash: String = after.chars().take_while(char::is_ascii_hexdigit).collect();
        if hash.is_empty() || !after[hash.len()..].starts_with(')') {
            out.push_str(REDACTED);
            rest = after;
            continue;
        }
        match key {
            Some(k) => {
                let mac = hmac_sha256(k, format!("dcm value\0{hash}").as_bytes());
                out.push_str(&format!("(sensitive, hmac:{})", &hex::encode(mac)[..12]));
            }
            None => {
                let n = match seen.iter().position(|h| *h == hash) {
                    Some(n) => n + 1,
                    None => {
                        seen.push(hash.clone());
                        seen.len()
                    }
                };
                out.push_str(&format!("(sensitive, value {n})"));
            }
        }
        rest = &after[hash.len() + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        assert_eq!(
            hex::encode(hmac_sha256(
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn sealed_texts_keep_no_plain_hash() {
        let t = "a: (sensitive, sha256:0123456789ab)\nb: (sensitive, sha256:ffffffffffff)\nc: (sensitive, sha256:0123456789ab)";
        let keyed = seal_text(t, Some(b"0123456789abcdef"), &mut Vec::new());
        assert!(!keyed.contains("0123456789ab)") && keyed.contains("(sensitive, hmac:"));
        let numbered = seal_text(t, None, &mut Vec::new());
        assert_eq!(
            numbered,
            "a: (sensitive, value 1)\nb: (sensitive, value 2)\nc: (sensitive, value 1)"
        );
        assert_eq!(
            seal_text("(sensitive, sha256:", None, &mut Vec::new()),
            "(sensitive, sha256:"
        );
    }

    #[test]
    fn keyed_records_match_only_under_their_key() {
        let s = seal_sha("abc", b"k1k1k1k1k1k1k1k1");
        assert!(recorded_matches(&s, "abc", Some(b"k1k1k1k1k1k1k1k1")));
        assert!(!recorded_matches(&s, "abc", Some(b"k2k2k2k2k2k2k2k2")));
        assert!(!recorded_matches(&s, "abc", None));
        assert!(recorded_matches("abc", "abc", None));
    }
}
