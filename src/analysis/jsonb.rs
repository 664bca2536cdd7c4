//! JSON exactly as the backend prints a jsonb value it read back from
//! PostgreSQL (`JSON.stringify`): compact, object keys ordered shorter-first
//! then bytewise (jsonb's storage order), numbers as JavaScript prints them.
//!
//! The batch job hashes these bytes for `analysisSha`, so that the backend,
//! hashing the same group, sees the same sha and asks for nothing more.

use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Serializes `value` the way the backend would.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// What change detection compares for one analysis: hex sha256 of its
/// status, a newline, and its object as the backend prints it from jsonb.
/// Computed the same way for a fresh result and for what consumers hold.
pub fn result_hash(status: &str, analysis_jsonb: &str) -> String {
    hex(result_digest(status, analysis_jsonb))
}

/// The sha256 of `status`, a newline and `text`, as bytes: with the
/// object as the backend prints it, what [`result_hash`] writes in hex.
pub fn result_digest(status: &str, text: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(status.as_bytes());
    hash.update(b"\n");
    hash.update(text.as_bytes());
    hash.finalize().into()
}

/// A sha256 in lowercase hex.
pub fn hex(digest: [u8; 32]) -> String {
    format!("{:x}", sha2::digest::Output::<Sha256>::from(digest))
}

/// Hex sha256 of the group's analyses serialized as one JSON array.
pub fn analysis_sha(analyses: &[&Value]) -> String {
    let mut out = String::from("[");
    for (i, a) in analyses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(a, &mut out);
    }
    out.push(']');
    format!("{:x}", Sha256::digest(out.as_bytes()))
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            // Integers within 2^53 print the same in JavaScript.
            (Some(i), _) if i.unsigned_abs() < (1 << 53) => {
                out.push_str(itoa(i, &mut [0u8; 20]));
            }
            (_, Some(x)) => write_js_number(x, out),
            _ => out.push_str("null"),
        },
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped as `JSON.stringify` does for the text
/// the analyses hold (serde_json's escaping, written in place).
fn write_string(s: &str, out: &mut String) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // Rare: let serde_json escape it.
    let mut buf = Vec::with_capacity(s.len() + 8);
    if serde_json::to_writer(&mut buf, s).is_ok() {
        out.push_str(&String::from_utf8_lossy(&buf));
    }
}

/// Decimal digits of `i` in `buf`.
fn itoa(i: i64, buf: &mut [u8; 20]) -> &str {
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// JavaScript's `Number.prototype.toString()` for a finite number
/// (ECMAScript Number::toString: shortest digits, then the layout rules),
/// appended to `out`. The digits are ryu's: the shortest that round-trip
/// and, of two equally near, the even one, as the specification (and V8)
/// choose; `{:e}` takes the upper one.
pub fn write_js_number(x: f64, out: &mut String) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    if x == 0.0 {
        out.push('0');
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    match text.split_once('e') {
        // Without an exponent (about 1e-5 to 1e16: most metrics) ryu's
        // layout is the specification's, with `.0` after an integer.
        None => out.push_str(text.strip_suffix(".0").unwrap_or(text)),
        Some((mantissa, exp)) => lay_out(mantissa, exp, out),
    }
}

/// The specification's layout of the digits of `mantissa` (`d.ddd`) times
/// ten to the `exp`.
fn lay_out(mantissa: &str, exp: &str, out: &mut String) {
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().unwrap_or(0) + 1;
    if k <= n && n <= 21 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if n > 0 { '+' } else { '-' };
        let _ = write!(out, "e{sign}{}", (n - 1).abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn js_number(x: f64) -> String {
        let mut out = String::new();
        write_js_number(x, &mut out);
        out
    }

    #[test]
    fn numbers_print_like_javascript() {
        let cases = [
            (4.0, "4"),
            (0.1, "0.1"),
            (-14.3, "-14.3"),
            (1260.0, "1260"),
            (0.9950000000000001, "0.9950000000000001"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (-2.5e-8, "-2.5e-8"),
            (-0.0, "0"),
            // Equally near two shortest candidates: the even one.
            (1000.0 + 2f64.powi(-14), "1000.0000610351562"),
            (1.3085487957268623e15, "1308548795726862.2"),
        ];
        for (x, want) in cases {
            assert_eq!(js_number(x), want, "{x}");
        }
    }

    /// The specification's steps over std's shortest digits (`{:e}`), which
    /// take the upper of two equally near candidates.
    fn with_std_digits(x: f64) -> String {
        let sci = format!("{:e}", x.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let mut out = String::from(if x < 0.0 { "-" } else { "" });
        lay_out(mantissa, exp, &mut out);
        out
    }

    #[test]
    fn digits_differ_from_std_only_where_the_specification_takes_the_even_one() {
        // Metric-like decimals, then arbitrary bit patterns of every scale.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut values: Vec<f64> = (-200_000..200_000).map(|i| f64::from(i) / 100.0).collect();
        for _ in 0..100_000 {
            let scale = 10f64.powi((next() % 40) as i32 - 20);
            values.push((next() % 1_000_000) as f64 * scale);
            values.push(f64::from_bits(next()));
        }
        let mut ties = 0;
        for x in values.into_iter().filter(|x| x.is_finite()) {
            let (quick, spelled) = (js_number(x), with_std_digits(x));
            if quick == spelled {
                continue;
            }
            // Two shortest candidates equally near x: the specification
            // takes the even one, std the upper one.
            let last = quick.bytes().last().unwrap_or(b'0');
            assert!(
                quick.parse::<f64>() == Ok(x)
                    && spelled.parse::<f64>() == Ok(x)
                    && quick.len() == spelled.len()
                    && (last - b'0').is_multiple_of(2),
                "{x:e}: {quick} against {spelled}"
            );
            ties += 1;
        }
        assert!(ties < 100, "{ties} ties");
    }

    #[test]
    fn keys_are_ordered_like_jsonb() {
        let v = json!({"overall": {"b": 1.0, "aa": [1, 2.5], "a": null}, "fap": {}, "engine": "x"});
        assert_eq!(
            to_string(&v),
            r#"{"fap":{},"engine":"x","overall":{"a":null,"b":1,"aa":[1,2.5]}}"#
        );
    }

    #[test]
    fn strings_and_integers_print_like_javascript() {
        let v =
            json!({"a": "plain", "b": "q\"uote\\\n", "c": -42, "d": 9007199254740993i64, "e": 0});
        assert_eq!(
            to_string(&v),
            r#"{"a":"plain","b":"q\"uote\\\n","c":-42,"d":9007199254740992,"e":0}"#
        );
    }

    #[test]
    fn the_sha_covers_the_whole_array() {
        let a = json!({"x": 1});
        let b = json!({"x": 2});
        assert_ne!(analysis_sha(&[&a, &b]), analysis_sha(&[&b, &a]));
        assert_eq!(analysis_sha(&[]), format!("{:x}", Sha256::digest(b"[]")));
    }
}
