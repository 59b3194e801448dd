//! The shared intake secret: `X-Webhook-Secret`, `Authorization: Bearer …` or `?secret=`
//! (LangSmith rules can only add a query parameter or custom headers), compared in constant time.

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Whether the request carries the secret in any accepted place.
pub(super) fn authorized(headers: &HeaderMap, query: Option<&str>, secret: &SecretString) -> bool {
    let expected = secret.expose_secret().as_bytes();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let from_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "secret")
            .map(|(_, v)| v.into_owned())
    });
    // Check every candidate so the time taken does not depend on which one matched.
    let mut ok = false;
    for candidate in [header("x-webhook-secret"), bearer, from_query.as_deref()]
        .into_iter()
        .flatten()
    {
        // `subtle` compares without stopping at the first differing byte (the length may leak;
        // a secret's length is not what protects it).
        ok |= bool::from(candidate.as_bytes().ct_eq(expected));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_accepted_in_each_place_and_nowhere_else() {
        let secret = SecretString::from("s3cr3t");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, None, &secret));
        assert!(authorized(&h, Some("a=1&secret=s3cr3t"), &secret));
        assert!(!authorized(&h, Some("secret=s3cr3"), &secret));
        h.insert("x-webhook-secret", "s3cr3t".parse().unwrap());
        assert!(authorized(&h, None, &secret));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cr3t".parse().unwrap());
        assert!(authorized(&h, None, &secret));
        h.insert("authorization", "Basic s3cr3t".parse().unwrap());
        assert!(!authorized(&h, None, &secret));
    }

    #[test]
    fn the_secret_must_match_every_byte_and_the_length() {
        let secret = SecretString::from("abc");
        let with = |given: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-webhook-secret", given.parse().unwrap());
            authorized(&h, None, &secret)
        };
        assert!(with("abc"));
        assert!(!with("abd"));
        assert!(!with("abcd"));
        assert!(!with("ab"));
    }
}
