//! RFC 8785 (JCS) canonical JSON: the exact leaf bytes of every receipt and record.
//!
//! Object members are sorted by their UTF-16 code units, strings use the minimal
//! ECMAScript escaping, and numbers are printed as ECMAScript's `Number.prototype.toString`
//! (via `ryu-js`). A number is only accepted when that printing keeps its exact decimal
//! value, so canonicalisation never silently changes what a client sent.

use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// Why a JSON value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number is out of double range, or (under the receipt policy) would change value
    /// when printed as an IEEE-754 double.
    #[error("{path}: number {text} is not exactly representable as an IEEE-754 double")]
    InexactNumber {
        /// JSON path of the offending number (e.g. `payload.items[2]`).
        path: String,
        /// The number as it was written.
        text: String,
    },
}

/// Canonical bytes of `value` (RFC 8785).
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value, &mut String::new())?;
    Ok(out)
}

/// Canonical string of `value` (RFC 8785).
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let bytes = to_vec(value)?;
    String::from_utf8(bytes).map_err(|_| unreachable_utf8())
}

fn unreachable_utf8() -> CanonicalError {
    CanonicalError::InexactNumber {
        path: String::new(),
        text: "invalid utf-8".into(),
    }
}

/// Checks every number in `value` without producing output; `root` names the value in errors.
pub fn check_numbers(value: &Value, root: &str) -> Result<(), CanonicalError> {
    let mut path = root.to_string();
    check_inner(value, &mut path)
}

fn check_inner(value: &Value, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => exact_number(n, path).map(|_| ()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_inner(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                push_key(path, k);
                check_inner(v, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn write_value(out: &mut Vec<u8>, value: &Value, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(number_text(n, path)?.as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(out, item, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map, path)?,
    }
    Ok(())
}

fn write_object(
    out: &mut Vec<u8>,
    map: &Map<String, Value>,
    path: &mut String,
) -> Result<(), CanonicalError> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        let len = path.len();
        push_key(path, k);
        write_value(out, v, path)?;
        path.truncate(len);
    }
    out.push(b'}');
    Ok(())
}

/// Rewrites every number in `value` to its canonical (ECMAScript) text, so that the value
/// serialises to the same numbers as its canonical form. Fails like [`to_vec`].
pub fn normalize_numbers(value: &mut Value) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => {
            let text = number_text(n, "")?;
            if let Ok(canonical) = text.parse::<Number>() {
                *n = canonical;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().try_for_each(normalize_numbers),
        _ => Ok(()),
    }
}

/// Orders member names by UTF-16 code units, as RFC 8785 §3.2.3 requires.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Appends the RFC 8785 form of a string (quoted, minimally escaped).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{9}' => out.extend_from_slice(b"\\t"),
            '\u{a}' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{d}' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// ECMAScript form of a JSON number (RFC 8785 §3.2.2.3); only non-finite values fail.
pub fn number_text(n: &Number, path: &str) -> Result<String, CanonicalError> {
    let text = n.to_string();
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(format_f64(f)),
        _ => Err(CanonicalError::InexactNumber {
            path: path.to_string(),
            text,
        }),
    }
}

/// ECMAScript form of a JSON number, or an error if printing it that way would change
/// its decimal value (the receipt policy: canonicalisation never alters client data).
pub fn exact_number(n: &Number, path: &str) -> Result<String, CanonicalError> {
    let printed = number_text(n, path)?;
    let text = n.to_string();
    if decimal_value(&text) != decimal_value(&printed) {
        return Err(CanonicalError::InexactNumber {
            path: path.to_string(),
            text,
        });
    }
    Ok(printed)
}

/// ECMAScript `Number.prototype.toString` of a finite double.
pub fn format_f64(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let mut buf = ryu_js::Buffer::new();
    buf.format_finite(f).to_string()
}

/// A decimal number reduced to sign, significant digits and exponent, for exact comparison.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// Parses JSON number text into its exact decimal value (`0.digits × 10^exponent`).
fn decimal_value(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let all: String = format!("{int_part}{frac_part}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let trimmed = all.trim_start_matches('0').trim_end_matches('0');
    if trimmed.is_empty() {
        return Some(Decimal {
            negative: false,
            digits: String::new(),
            exponent: 0,
        });
    }
    let exponent = exp + int_part.len() as i64 - leading as i64;
    Some(Decimal {
        negative,
        digits: trimmed.to_string(),
        exponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> Result<String, CanonicalError> {
        let v: Value = serde_json::from_str(text).map_err(|e| CanonicalError::InexactNumber {
            path: "parse".into(),
            text: e.to_string(),
        })?;
        to_string(&v)
    }

    #[test]
    fn decimal_values_compare_exactly() {
        assert_eq!(decimal_value("100"), decimal_value("1e2"));
        assert_eq!(decimal_value("0.001"), decimal_value("1E-3"));
        assert_eq!(decimal_value("-0"), decimal_value("0"));
        assert_ne!(decimal_value("0.1"), decimal_value("0.01"));
        assert_ne!(
            decimal_value("12345678901234567890"),
            decimal_value("12345678901234567000")
        );
    }

    #[test]
    fn rfc8785_section_3_2_2_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input).unwrap_or_default(),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn rfc8785_sorting_by_utf16_code_units() {
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let out = canon(input).unwrap_or_default();
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut last = 0;
        for key in order {
            let pos = out.find(&format!("\"{key}\"")).unwrap_or(usize::MAX);
            assert!(
                pos != usize::MAX && pos >= last,
                "{key} out of order in {out}"
            );
            last = pos;
        }
    }

    #[test]
    fn rfc8785_number_serialisation_table() {
        // Appendix B pairs (IEEE-754 bits -> ECMAScript text).
        let cases: [(u64, &str); 14] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x41b3de4355555555, "333333333.3333333"),
        ];
        for (bits, text) in cases {
            assert_eq!(format_f64(f64::from_bits(bits)), text, "bits {bits:#x}");
        }
    }

    #[test]
    fn receipt_policy_rejects_the_rfc_sample_number_that_is_not_shortest() {
        let v: Value = serde_json::from_str("[333333333.33333329]").unwrap_or_default();
        assert!(to_vec(&v).is_ok());
        assert!(check_numbers(&v, "payload").is_err());
    }

    fn strict(text: &str) -> Result<String, CanonicalError> {
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        check_numbers(&v, "")?;
        to_string(&v)
    }

    #[test]
    fn numbers_that_change_value_are_rejected_with_their_path() {
        for bad in [
            "12345678901234567890",
            "9007199254740993",
            "0.30000000000000000001",
            "1e400",
            "-1e400",
        ] {
            let err = strict(&format!("{{\"a\":{{\"b\":[1,{bad}]}}}}"));
            match err {
                Err(CanonicalError::InexactNumber { path, text }) => {
                    assert_eq!(path, "a.b[1]");
                    assert_eq!(decimal_value(&text), decimal_value(bad));
                }
                other => panic!("{bad} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn exact_numbers_are_normalised() {
        assert_eq!(
            strict("[1.0, 1e2, 1E-7, -0, 0.1, 9007199254740992, 1.5e300, 100e-2]")
                .unwrap_or_default(),
            "[1,100,1e-7,0,0.1,9007199254740992,1.5e+300,1]"
        );
    }

    #[test]
    fn escapes_and_unicode() {
        assert_eq!(
            canon(r#"["\u0000\u001f\u007f", "\u2028\u2029", "é", "\ud83d\ude00", "a\/b"]"#)
                .unwrap_or_default(),
            "[\"\\u0000\\u001f\u{7f}\",\"\u{2028}\u{2029}\",\"é\",\"😀\",\"a/b\"]"
        );
    }

    #[test]
    fn nested_structures_sort_at_every_level() {
        assert_eq!(
            canon(r#"{"b":[{"z":1,"a":2}],"a":{"d":null,"c":true}}"#).unwrap_or_default(),
            r#"{"a":{"c":true,"d":null},"b":[{"a":2,"z":1}]}"#
        );
    }
}
