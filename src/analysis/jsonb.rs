//! JSON exactly as the backend prints a jsonb value it read back from
//! PostgreSQL (`JSON.stringify`): compact, object keys ordered shorter-first
//! then bytewise (jsonb's storage order), numbers as JavaScript prints them.
//!
//! The batch job hashes these bytes for `analysisSha`, so that the backend,
//! hashing the same group, sees the same sha and asks for nothing more.

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
    let mut hash = Sha256::new();
    hash.update(status.as_bytes());
    hash.update(b"\n");
    hash.update(analysis_jsonb.as_bytes());
    format!("{:x}", hash.finalize())
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
            (_, Some(x)) => out.push_str(&js_number(x)),
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
/// (ECMAScript Number::toString: shortest digits, then the layout rules).
pub fn js_number(x: f64) -> String {
    if !x.is_finite() {
        return "null".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().unwrap_or(0) + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n > 0 { "+" } else { "-" };
        let rest = if k > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!("{rest}e{sign}{}", (n - 1).abs())
    };
    if x < 0.0 { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        ];
        for (x, want) in cases {
            assert_eq!(js_number(x), want, "{x}");
        }
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
