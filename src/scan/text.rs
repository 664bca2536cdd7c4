//! Cell-level reading rules of contract §1 and §2.2: numbers and timestamps.
//!
//! Both work on raw bytes, so a latin1 byte anywhere never fails a log; a cell
//! that breaks a rule is null, never an error.

/// Parses a numeric cell as the contract reads it.
///
/// Accepted: optional surrounding ASCII spaces, optional sign, digits with an
/// optional `.` (`.5` and `5.` included) and an optional exponent (`1e3`).
/// Everything else (`N/A`, `1,5`, `0x10`, `inf`, `nan`, empty) is `None`, and
/// so is any value that overflows to infinity.
pub fn parse_number(cell: &[u8]) -> Option<f64> {
    let cell = cell.trim_ascii();
    let (negative, body) = match cell.first()? {
        b'-' => (true, &cell[1..]),
        b'+' => (false, &cell[1..]),
        _ => (false, cell),
    };
    // Fast path: plain digits with at most one dot and few enough digits that
    // mantissa and power of ten are exact, so one division is correctly rounded.
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut frac_digits = 0u32;
    let mut seen_dot = false;
    let mut simple = true;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                digits += 1;
                frac_digits += u32::from(seen_dot);
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => {
                simple = false;
                break;
            }
        }
    }
    if simple {
        if digits == 0 || digits > 15 {
            return if digits == 0 { None } else { slow_parse(cell) };
        }
        let value = mantissa as f64 / POW10[frac_digits as usize];
        return Some(if negative { -value } else { value });
    }
    slow_parse(cell)
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Validates the grammar by hand (Rust's parser also takes `inf` and `nan`),
/// then lets the standard library do the correctly rounded conversion.
fn slow_parse(cell: &[u8]) -> Option<f64> {
    let mut i = 0;
    if matches!(cell.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < cell.len() && cell[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < cell.len() && cell[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < cell.len() && cell[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return None;
    }
    if i < cell.len() && matches!(cell[i], b'e' | b'E') {
        i += 1;
        if matches!(cell.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < cell.len() && cell[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != cell.len() {
        return None;
    }
    let text = std::str::from_utf8(cell).ok()?;
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The years a logger can have written: earlier or later dates are invalid
/// (contract §6), which also keeps nanosecond differences far from overflow.
const YEARS: std::ops::Range<u32> = 1990..2100;

/// Parses `Date` + `Time` in the strict format `Y.M.D` and `H:M:S.f` into
/// nanoseconds since 1970-01-01 (naive, taken as UTC).
///
/// As the reference reads `Date + ' ' + Time` (contract §2.2): fields may be
/// unpadded (`2025.2.3`, `7:34:46.1`); the dot is required but its digits are
/// not (`15:00:11.` is 15:00:11.0); more than 9 digits are cut to
/// nanoseconds; spaces may separate the two cells (trailing in `Date`,
/// leading in `Time`). Anything else — no dot, a comma, a trailing space, a
/// leading space before the date, hour 25, 30 February, a year outside
/// 1990–2099 — is `None`: the row has no timestamp and is dropped.
pub fn parse_timestamp(date: &[u8], time: &[u8]) -> Option<i64> {
    let mut d = Fields::new(trim_end_spaces(date));
    let year = d.number(4, 4, b'.')?;
    let month = d.number(1, 2, b'.')?;
    let day = d.number(1, 2, 0)?;
    let mut t = Fields::new(trim_start_spaces(time));
    let hour = t.number(1, 2, b':')?;
    let minute = t.number(1, 2, b':')?;
    let second = t.number(1, 2, b'.')?;
    let nanos = t.fraction_nanos()?;
    if !YEARS.contains(&year) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let days = i64::from(chrono::Datelike::num_days_from_ce(&date)) - 719_163;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(seconds * 1_000_000_000 + nanos)
}

fn trim_end_spaces(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &bytes[..end]
}

fn trim_start_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

/// A cursor over `digits sep digits sep ...` with exact separators.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads `min..=max` digits followed by `sep` (0 = end of input).
    fn number(&mut self, min: usize, max: usize, sep: u8) -> Option<u32> {
        let start = self.pos;
        let mut value = 0u32;
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_digit() {
            value = value * 10 + u32::from(self.bytes[self.pos] - b'0');
            self.pos += 1;
            if self.pos - start > max {
                return None;
            }
        }
        if self.pos - start < min {
            return None;
        }
        if sep == 0 {
            return (self.pos == self.bytes.len()).then_some(value);
        }
        if self.bytes.get(self.pos) != Some(&sep) {
            return None;
        }
        self.pos += 1;
        Some(value)
    }

    /// Reads the fraction digits up to the end of input (none at all is 0),
    /// as nanoseconds: digits past the ninth are cut, not rounded.
    fn fraction_nanos(&mut self) -> Option<i64> {
        let rest = &self.bytes[self.pos..];
        if !rest.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let kept = &rest[..rest.len().min(9)];
        let value = kept.iter().fold(0i64, |v, b| v * 10 + i64::from(b - b'0'));
        Some(value * 10i64.pow(9 - kept.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_contract() {
        let ok = [
            ("0", 0.0),
            ("1000", 1000.0),
            (" 12.5 ", 12.5),
            ("+5", 5.0),
            ("-3.25", -3.25),
            ("1e3", 1000.0),
            ("2.5E-1", 0.25),
            (".5", 0.5),
            ("5.", 5.0),
            ("14.88", 14.88),
            ("0.1", 0.1),
            ("12345678901234567890", 12345678901234567890.0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_number(text.as_bytes()), Some(want), "{text}");
        }
        let null = [
            "", " ", "N/A", "-", "1,5", "abc", "5\u{b0}", "0x10", "inf", "Infinity", "nan", "1e",
            ".", "+", "1.2.3", "1e999", "--1",
        ];
        for text in null {
            assert_eq!(parse_number(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(parse_number(b"5\xb0"), None, "latin1 degree sign");
    }

    #[test]
    fn fast_path_equals_standard_parse() {
        for text in [
            "0.9",
            "14.88",
            "123456.789012",
            "0.000001",
            "99999999999.9999",
        ] {
            let want: f64 = text.parse().unwrap();
            assert_eq!(parse_number(text.as_bytes()), Some(want), "{text}");
        }
    }

    fn ts(date: &str, time: &str) -> Option<i64> {
        parse_timestamp(date.as_bytes(), time.as_bytes())
    }

    #[test]
    fn timestamps_are_strict() {
        // 2025-02-03 20:34:42.9 UTC
        assert_eq!(
            ts("2025.02.03", "20:34:42.9"),
            Some(1_738_614_882_900_000_000)
        );
        assert_eq!(ts("2025.2.3", "7:34:46.1"), ts("2025.02.03", "07:34:46.1"));
        assert_eq!(
            ts("2025.02.03", "20:34:42.123456789"),
            Some(1_738_614_882_123_456_789)
        );
        assert_eq!(
            ts("2024.02.29", "00:00:00.0"),
            Some(1_709_164_800_000_000_000)
        );
        for (date, time) in [
            ("2025.02.03", "14:52:29"),
            ("2025.02.03", "14:52:29.5 "),
            ("2025.02.03", "14:52:29,5"),
            ("2025.02.03", "25:00:00.0"),
            ("2025.02.30", "10:00:00.0"),
            ("2025.13.01", "10:00:00.0"),
            ("2023.02.29", "10:00:00.0"),
            ("", "10:00:00.0"),
            ("2025.02.03", ""),
            ("Date", "Time"),
            ("2025-02-03", "10:00:00.0"),
            (" 2025.02.03", "10:00:00.0"),
            ("2025.02.03", "10:00:00.5x"),
            ("2300.01.01", "10:00:00.0"),
            ("1600.01.01", "10:00:00.0"),
        ] {
            assert_eq!(ts(date, time), None, "{date} {time}");
        }
    }

    /// Contract §2.2, corrected 2026-11-28: what pandas also accepts.
    #[test]
    fn regression_trailing_dot_long_fractions_and_spaces_are_accepted() {
        let whole = ts("2025.02.03", "15:00:11.0");
        assert!(whole.is_some());
        assert_eq!(ts("2025.02.03", "15:00:11."), whole, "dot with no digits");
        assert_eq!(
            ts("2025.02.03", "15:00:11.1234567899"),
            ts("2025.02.03", "15:00:11.123456789"),
            "more than 9 digits are cut, not rounded"
        );
        assert_eq!(ts("2025.02.03", "   15:00:11.0"), whole, "several spaces");
        assert_eq!(
            ts("2025.02.03  ", "15:00:11.0"),
            whole,
            "spaces after the date"
        );
    }

    /// Contract §6: no logger writes dates before 1990 or from 2100 on; far
    /// ones overflowed nanosecond differences into negative durations.
    #[test]
    fn regression_timestamps_outside_1990_to_2099_are_invalid() {
        assert_eq!(ts("1989.12.31", "23:59:59.9"), None);
        assert!(ts("1990.01.01", "00:00:00.0").is_some());
        assert!(ts("2099.12.31", "23:59:59.9").is_some());
        assert_eq!(ts("2100.01.01", "00:00:00.0"), None);
        assert_eq!(ts("1677.09.21", "00:12:44.0"), None);
        assert_eq!(ts("2262.04.11", "23:47:16.8"), None);
    }

    #[test]
    fn time_differences_are_exact_in_integer_nanoseconds() {
        let a = ts("2025.02.03", "20:34:42.9").unwrap();
        let b = ts("2025.02.03", "20:34:43.8").unwrap();
        let c = ts("2025.02.03", "20:41:44.8").unwrap();
        assert_eq!((b - a) as f64 / 1e9, 0.9);
        assert_eq!((c - b) as f64 / 1e9, 421.0);
    }
}
