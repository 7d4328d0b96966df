//! I-JSON parsing of request bodies (RFC 7493, SPEC §7): an object with a duplicate member
//! name is refused rather than silently keeping the last value, so what a client believes it
//! sent is exactly what is validated and signed.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The name serde_json gives an arbitrary-precision number when it passes one as a map.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why a body is not I-JSON.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StrictJsonError(String);

/// Parses `bytes` as one JSON value, refusing duplicate object member names anywhere.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict::deserialize(&mut de).map_err(|e| StrictJsonError(e.to_string()))?;
    de.end().map_err(|e| StrictJsonError(e.to_string()))?;
    Ok(value.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if first && key == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                let n: Number = serde_json::from_str(&text).map_err(de::Error::custom)?;
                return Ok(Value::Number(n));
            }
            first = false;
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format!(
                    "duplicate member name {shown:?} in an object"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        for bad in [
            r#"{"type":"first","type":"second"}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[{"x":1},{"y":2,"y":3}]"#,
            r#"{"type":"a","\u0074ype":"b"}"#,
        ] {
            let e = parse(bad.as_bytes()).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|m| m.contains("duplicate member name")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn values_match_serde_json_exactly() {
        for good in [
            r#"{"type":"t","payload":{"n":1.50,"big":18446744073709551616,"e":1e400,"neg":-0}}"#,
            r#"[1,2.5,"s",null,true,false,{"a":[]},{}]"#,
            r#""\u00e9\ud83d\ude00""#,
            "0",
        ] {
            let want: Value = serde_json::from_str(good).unwrap_or_default();
            let got = parse(good.as_bytes()).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(got, want, "{good}");
            assert_eq!(got.to_string(), want.to_string(), "{good}");
        }
    }

    #[test]
    fn malformed_and_trailing_input_is_refused() {
        for bad in ["", "{", r#"{"a":1} x"#, r#"{"a":1}{"b":2}"#, "[1,]", "nul"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
