//! RFC 8785 (JCS) canonical JSON: the exact leaf bytes of every receipt and record.
//!
//! Object members are sorted by their UTF-16 code units, strings use the minimal
//! ECMAScript escaping, and numbers are printed as ECMAScript's `Number.prototype.toString`
//! (via `ryu-js`). A number is only accepted when that printing keeps its exact decimal
//! value, so canonicalisation never silently changes what a client sent, and when its
//! magnitude is within I-JSON's exact integer range (RFC 7493 §2.2). No input panics.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// Largest magnitude I-JSON (RFC 7493 §2.2) guarantees every reader keeps exact: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

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
    /// A number (necessarily an integer) whose magnitude exceeds 2^53 − 1: outside the
    /// I-JSON range, so other readers may not keep it exact.
    #[error("{path}: integer {text} is outside the I-JSON range [-(2^53-1), 2^53-1]")]
    UnsafeInteger {
        /// JSON path of the offending number or field (e.g. `payload.n`, `seq`).
        path: String,
        /// The number as it was written.
        text: String,
    },
}

/// Refuses `n`, the value of the integer field `field`, when it exceeds 2^53 − 1.
pub fn check_safe_integer(n: u64, field: &str) -> Result<u64, CanonicalError> {
    if n > MAX_SAFE_INTEGER {
        return Err(CanonicalError::UnsafeInteger {
            path: field.to_string(),
            text: n.to_string(),
        });
    }
    Ok(n)
}

/// Reads the integer field `field` of a format (receipt `seq`, anchor `epoch`, `tree_size`)
/// for `#[serde(deserialize_with)]` wrappers, refusing values above 2^53 − 1.
pub fn deserialize_safe_u64<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    check_safe_integer(n, field).map_err(serde::de::Error::custom)
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
/// its decimal value or its magnitude exceeds 2^53 − 1 (the receipt policy:
/// canonicalisation never alters client data, and every I-JSON reader reads it exactly).
pub fn exact_number(n: &Number, path: &str) -> Result<String, CanonicalError> {
    let printed = number_text(n, path)?;
    let text = n.to_string();
    let value = match (decimal_value(&text), decimal_value(&printed)) {
        (Some(written), Some(canonical)) if written == canonical => canonical,
        _ => {
            return Err(CanonicalError::InexactNumber {
                path: path.to_string(),
                text,
            })
        }
    };
    if value.exceeds_safe_integer() {
        return Err(CanonicalError::UnsafeInteger {
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

impl Decimal {
    /// Whether the magnitude exceeds 2^53 − 1 (every such exact double is an integer).
    fn exceeds_safe_integer(&self) -> bool {
        const MAX_DIGITS: &str = "9007199254740991";
        match self.exponent.cmp(&16) {
            Ordering::Less => false,
            Ordering::Greater => true,
            Ordering::Equal => self.digits.as_str() > MAX_DIGITS,
        }
    }
}

/// Parses JSON number text into its exact decimal value (`0.digits × 10^exponent`). Zero is
/// recognised whatever its exponent; otherwise `None` when the exponent does not fit in an
/// `i64` (such a value is far outside double range).
fn decimal_value(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp_text) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
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
    let exp = match exp_text {
        Some(t) => t.parse::<i64>().ok()?,
        None => 0,
    };
    let int_len = i64::try_from(int_part.len()).ok()?;
    let leading = i64::try_from(leading).ok()?;
    let exponent = exp.checked_add(int_len)?.checked_sub(leading)?;
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
            strict(
                "[1.0, 1e2, 1E-7, -0, 0.1, 9007199254740991, -9007199254740991, 1.5e15, 100e-2]"
            )
            .unwrap_or_default(),
            "[1,100,1e-7,0,0.1,9007199254740991,-9007199254740991,1500000000000000,1]"
        );
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text} does not parse: {e}"))
    }

    #[test]
    fn integers_outside_the_i_json_range_are_refused_with_their_path() {
        for bad in [
            "9007199254740992",
            "-9007199254740992",
            "9007199254740992.0",
            "90071992547409920e-1",
            "18014398509481984",
            "1000000000000000000",
            "1e16",
            "1e21",
            "-1e21",
            "1.5e300",
            "1.7976931348623157e308",
        ] {
            match check_numbers(&parsed(&format!("{{\"a\":[0,{bad}]}}")), "payload") {
                Err(CanonicalError::UnsafeInteger { path, text }) => {
                    assert_eq!(path, "payload.a[1]");
                    assert_eq!(decimal_value(&text), decimal_value(bad));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for ok in [
            "9007199254740991",
            "-9007199254740991",
            "9007199254740990.0",
            "9.007199254740991e15",
            "4503599627370495.5",
            "1e15",
            "5e-324",
        ] {
            assert_eq!(check_numbers(&parsed(ok), ""), Ok(()), "{ok}");
        }
        assert_eq!(
            to_string(&parsed("[9007199254740992, 1e21]")).unwrap_or_default(),
            "[9007199254740992,1e+21]",
            "plain RFC 8785 canonicalisation still prints any double"
        );
    }

    #[test]
    fn integer_fields_are_bounded_by_2_pow_53_minus_1() {
        assert_eq!(
            check_safe_integer(MAX_SAFE_INTEGER, "seq"),
            Ok(MAX_SAFE_INTEGER)
        );
        assert!(matches!(
            check_safe_integer(MAX_SAFE_INTEGER + 1, "seq"),
            Err(CanonicalError::UnsafeInteger { path, .. }) if path == "seq"
        ));
        let read = |text: &str| {
            let mut de = serde_json::Deserializer::from_str(text);
            deserialize_safe_u64(&mut de, "tree_size").map_err(|e| e.to_string())
        };
        assert_eq!(read("9007199254740991"), Ok(MAX_SAFE_INTEGER));
        for bad in [
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
        ] {
            let err = read(bad).err().unwrap_or_default();
            assert!(
                err.contains("tree_size") && err.contains(bad),
                "{bad}: {err}"
            );
        }
        assert!(read("-1").is_err() && read("1.5").is_err() && read("\"1\"").is_err());
    }

    #[test]
    fn extreme_exponents_never_panic() {
        for zero in [
            "0e9223372036854775807",
            "0e-9223372036854775808",
            "-0e-99999999999999999999",
            "0.000e+99999999999999999999999999",
            "-0.0E9223372036854775808",
        ] {
            let v = parsed(zero);
            assert_eq!(check_numbers(&v, ""), Ok(()), "{zero}");
            assert_eq!(to_string(&v), Ok("0".to_string()), "{zero}");
        }
        let long_one = format!("1{}", "0".repeat(400));
        let long_tiny = format!("0.{}1", "0".repeat(400));
        let long_digits = "7".repeat(5000);
        for bad in [
            "0.00001e-9223372036854775808",
            "-0.00001e-9223372036854775808",
            "1e9223372036854775807",
            "1e-9223372036854775807",
            "1e9223372036854775808",
            "-1e-9223372036854775808",
            "123.456e-9223372036854775808",
            "12.5e99999999999999999999",
            "1e400",
            "-1e400",
            "1e-400",
            &long_one,
            &long_tiny,
            &long_digits,
        ] {
            let v = parsed(bad);
            assert!(check_numbers(&v, "").is_err(), "{bad} accepted");
            let _ = to_vec(&v);
        }
        let exact_long = format!("1{}e-400", "0".repeat(400));
        assert_eq!(strict(&exact_long), Ok("1".to_string()));
        let padded = format!("0.1{}", "0".repeat(1000));
        assert_eq!(strict(&padded), Ok("0.1".to_string()));
    }

    /// xorshift64*: a small deterministic generator for the number-text property test.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn digits(&mut self, len: u64) -> String {
            (0..len)
                .map(|_| char::from(b'0' + self.below(10) as u8))
                .collect()
        }

        fn number(&mut self) -> String {
            let mut t = String::new();
            if self.below(2) == 0 {
                t.push('-');
            }
            let int_len = [1, 1, 3, 16, 17, 25, 400][self.below(7) as usize];
            if self.below(4) == 0 {
                t.push('0');
            } else {
                t.push(char::from(b'1' + self.below(9) as u8));
                t.push_str(&self.digits(int_len - 1));
            }
            if self.below(2) == 0 {
                let frac_len = [1, 2, 15, 30, 400][self.below(5) as usize];
                t.push('.');
                t.push_str(&self.digits(frac_len));
            }
            if self.below(3) != 0 {
                t.push(['e', 'E'][self.below(2) as usize]);
                t.push_str(["", "+", "-"][self.below(3) as usize]);
                let exp = match self.below(6) {
                    0 => "9223372036854775807".to_string(),
                    1 => "9223372036854775808".to_string(),
                    2 => "99999999999999999999".to_string(),
                    3 => format!("00{}", self.below(400)),
                    4 => {
                        let len = 1 + self.below(25);
                        self.digits(len)
                    }
                    _ => self.below(330).to_string(),
                };
                t.push_str(&exp);
            }
            t
        }
    }

    #[test]
    fn random_number_texts_never_panic_and_accepted_ones_are_stable() {
        let mut g = Gen(0x5eed_cafe_f00d_d00d);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let text = g.number();
            let v = parsed(&format!("{{\"n\":[{text}]}}"));
            let plain = to_vec(&v);
            if let Value::Number(n) = &v["n"][0] {
                let _ = number_text(n, "n");
                let _ = exact_number(n, "n");
            }
            if check_numbers(&v, "").is_err() {
                continue;
            }
            accepted += 1;
            let canonical = plain.unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut normalised = v.clone();
            assert_eq!(normalize_numbers(&mut normalised), Ok(()), "{text}");
            assert_eq!(to_vec(&normalised).as_ref(), Ok(&canonical), "{text}");
            let again = parsed(&String::from_utf8_lossy(&canonical));
            assert_eq!(check_numbers(&again, ""), Ok(()), "{text}");
            assert_eq!(to_vec(&again).as_ref(), Ok(&canonical), "{text}");
        }
        assert!(accepted > 1_000, "only {accepted} accepted");
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
