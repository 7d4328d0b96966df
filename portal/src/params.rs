//! Parsing what a request carries besides its body's fields: JSON bodies, numeric query
//! parameters and path segments, each refused with a 400 that names it.

use ledger::api_error::ApiError;
use serde_json::Value;
use std::collections::HashMap;

/// A request's query parameters, each name at most once: a repeated name (`?from=1&from=2`)
/// is a 400, not silently the last value, so what the client sent is what is served.
pub fn query() -> impl warp::Filter<
    Extract = (Result<HashMap<String, String>, ApiError>,),
    Error = std::convert::Infallible,
> + Clone {
    use warp::Filter;
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .map(|raw: String| parse_query(&raw))
}

fn parse_query(raw: &str) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::bad("invalid_query", format!("query string: {e}")))?;
    let mut out = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if out.contains_key(&name) {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::bad(
                "invalid_query",
                format!("{shown}: given more than once"),
            ));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// Largest page of a listing.
pub const MAX_PAGE: u32 = 1000;

/// The body as I-JSON (duplicate member names refused), or 400 `malformed_json`.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    ledger::strict_json::parse(body).map_err(|e| {
        ApiError::bad(
            "malformed_json",
            format!("request body is not valid I-JSON: {e}"),
        )
    })
}

/// A canonical decimal integer: ASCII digits only, no sign, no leading zero (except `0`
/// itself), within u64. `+1`, `01`, ` 1` and `1e3` are refused, so one position has exactly
/// one spelling.
pub fn canonical_u64(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = text == "0" || !text.starts_with('0');
    if digits_only && no_leading_zero && text.len() <= 20 {
        text.parse().ok()
    } else {
        None
    }
}

/// Query parameter `name` as a canonical non-negative integer, if present.
pub fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(s) => canonical_u64(s).map(Some).ok_or_else(|| {
            ApiError::bad(
                "invalid_query",
                format!(
                    "{name}: must be a non-negative decimal integer without sign or leading zeros"
                ),
            )
        }),
    }
}

/// A `{seq}` path segment as a canonical non-negative integer.
pub fn seq_param(s: &str) -> Result<u64, ApiError> {
    canonical_u64(s).ok_or_else(|| {
        ApiError::bad(
            "invalid_seq",
            "seq: must be a non-negative decimal integer without sign or leading zeros",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::canonical_u64;

    #[test]
    fn repeated_query_names_are_refused() {
        assert!(super::parse_query("from=1&from=2").is_err());
        assert!(super::parse_query("from=1&limit=2").is_ok_and(|q| q.len() == 2));
        assert!(super::parse_query("").is_ok_and(|q| q.is_empty()));
        assert!(super::parse_query("seq=%31").is_ok_and(|q| q["seq"] == "1"));
    }

    #[test]
    fn only_canonical_integers_parse() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("+1", None),
            ("01", None),
            ("00", None),
            ("-0", None),
            (" 1", None),
            ("1 ", None),
            ("1e3", None),
            ("", None),
            ("١", None),
        ] {
            assert_eq!(canonical_u64(text), want, "{text:?}");
        }
    }
}
