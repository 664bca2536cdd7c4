//! One log file, read into Arrow: its header (which contract columns it has)
//! and its rows (typed, ordered by time).
//!
//! Reading never fails on content: a latin1 byte, a ragged row or a garbage
//! cell only turns that cell into null. What makes a whole log unusable (empty
//! file, no header, no Date/Time column, too large, changed since upload) is a
//! [`LogProblem`]: the log then yields a single row carrying the problem's
//! text, which ends up in the `Failed` analysis.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Builder, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::Result;

use super::columns::{DATE, NUMERIC, TIME};
use super::text::{parse_number, parse_timestamp};

/// Why a log cannot be analysed at all, in words for the driver.
pub type LogProblem = String;

/// The problems that say nothing of the uploaded bytes: the volume did not
/// give them (unreadable, not a file, changed since upload), or they exceed
/// this run's limits. A result that failed so is not reused: the next run
/// reads the log again (see [`is_retried`]).
pub const UNREADABLE: &str = "The log file could not be read";
pub const NOT_A_FILE: &str = "The log is not a regular file.";
pub const CHANGED_SINCE_UPLOAD: &str =
    "File changed since upload: its contents no longer match the uploaded log.";
pub const TOO_LARGE: &str = "Log too large";

/// Whether a failed analysis with this message is analysed again next run.
pub fn is_retried(message: &str) -> bool {
    [UNREADABLE, NOT_A_FILE, CHANGED_SINCE_UPLOAD, TOO_LARGE]
        .iter()
        .any(|problem| message.starts_with(problem))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where each contract column sits in a log's rows.
#[derive(Debug, Clone)]
pub struct LogHeader {
    date: usize,
    time: usize,
    /// For each field position, the index into [`NUMERIC`] it feeds.
    numeric_at: Vec<Option<usize>>,
    /// Whether the log has a `Speed` / `OilTemp` column at all: some metrics
    /// are null when the column is absent but 0 when it is only empty.
    has_speed: bool,
    has_oil_temp: bool,
}

/// The most a log may hold; a larger one fails alone instead of taking the
/// memory of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_rows: u64,
    pub max_bytes: u64,
}

impl Default for LogLimits {
    /// The largest real logs hold ~3,000 rows (0.6 MB): 200,000 rows (55
    /// hours at one row a second) and 64 MB leave room many times over.
    fn default() -> Self {
        Self {
            max_rows: 200_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The message of a log over the byte limit.
pub fn too_many_bytes(bytes: u64, limits: LogLimits) -> LogProblem {
    format!("{TOO_LARGE}: {bytes} bytes, limit {}.", limits.max_bytes)
}

/// Strips a UTF-8 BOM: the reference failed on it, the contract wants it ignored.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// A log's header line and the text after it. The BOM is stripped and blank
/// lines before the header are skipped, as the reference's reader skips them.
fn split_header(bytes: &[u8]) -> std::result::Result<(&[u8], &[u8]), LogProblem> {
    if bytes.is_empty() {
        return Err("The file is empty (0 bytes): there is no log to analyse.".into());
    }
    let mut rest = strip_bom(bytes);
    if rest.is_empty() {
        return Err(
            "The file holds only a text-encoding mark (BOM): there is no log to analyse.".into(),
        );
    }
    loop {
        let (line, after, last) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..], false),
            None => (rest, &rest[rest.len()..], true),
        };
        let line = trim_cr(line);
        if !line.trim_ascii().is_empty() {
            return Ok((line, after));
        }
        if last {
            return Err("The log has no header line: the file holds only blank lines.".into());
        }
        rest = after;
    }
}

/// Reads the header line of a log; returns it with the text of its rows.
pub fn read_header(bytes: &[u8]) -> std::result::Result<(LogHeader, &[u8]), LogProblem> {
    let (line, body) = split_header(bytes)?;
    if line.iter().any(|&b| b < 0x09) {
        return Err("The file is not a CSV log: it contains binary data.".into());
    }
    let names: Vec<&[u8]> = line.split(|&b| b == b';').collect();
    let position = |name: &str| names.iter().position(|n| *n == name.as_bytes());
    let (date, time) = match (position(DATE), position(TIME)) {
        (Some(d), Some(t)) => (d, t),
        (None, None) => return Err(no_date_and_time(line)),
        (None, Some(_)) => {
            return Err("The log has no Date column, so its rows cannot be placed in time.".into());
        }
        (Some(_), None) => {
            return Err("The log has no Time column, so its rows cannot be placed in time.".into());
        }
    };
    let mut numeric_at = vec![None; names.len()];
    for (col, name) in NUMERIC.iter().enumerate() {
        // The first of duplicated names wins, as in the reference's reader.
        if let Some(pos) = position(name) {
            numeric_at[pos] = Some(col);
        }
    }
    let header = LogHeader {
        date,
        time,
        numeric_at,
        has_speed: position("Speed").is_some(),
        has_oil_temp: position("OilTemp").is_some(),
    };
    Ok((header, body))
}

/// The problem of a header without `Date` and `Time`: a log written with
/// another separator has them, and the driver is told that instead.
fn no_date_and_time(line: &[u8]) -> LogProblem {
    let has_both = |separator: u8| {
        let names: Vec<&[u8]> = line.split(|&b| b == separator).collect();
        [DATE, TIME]
            .iter()
            .all(|name| names.iter().any(|n| n.trim_ascii() == name.as_bytes()))
    };
    for (separator, name) in [(b',', "commas"), (b'\t', "tabs")] {
        if has_both(separator) {
            return format!(
                "The log's columns are separated by {name}, not semicolons (;), so its Date and Time columns cannot be read."
            );
        }
    }
    "The log has no Date and no Time column, so its rows cannot be placed in time.".into()
}

/// Old Mac line ends (`\r` alone) as `\n`, for a log that has no `\n` at all;
/// `None` for any other log.
fn mac_lines_as_unix(bytes: &[u8]) -> Option<Vec<u8>> {
    if memchr::memchr(b'\n', bytes).is_some() || memchr::memchr(b'\r', bytes).is_none() {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect(),
    )
}

/// The rows of one log as record batches of at most `batch_size` rows,
/// ordered by (timestamp, line), rows without a valid timestamp last; or the
/// problem that stops the log from being read.
pub fn read_log(
    schema: &SchemaRef,
    log_no: i64,
    bytes: &[u8],
    limits: LogLimits,
    batch_size: usize,
) -> Result<Vec<RecordBatch>> {
    match read_rows(schema, log_no, bytes, limits, batch_size) {
        Ok(batches) => Ok(batches),
        Err(problem) => Ok(vec![problem_row(schema, log_no, &problem)?]),
    }
}

/// The single row that carries a log's problem to the SQL: no timestamp, no
/// values, `problem` set.
pub fn problem_row(schema: &SchemaRef, log_no: i64, problem: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "log_no" => Arc::new(Int64Array::from(vec![log_no])),
                "line" => Arc::new(Int64Array::from(vec![0])),
                "problem" => Arc::new(StringArray::from(vec![problem])),
                _ if field.data_type() == &DataType::Boolean => {
                    Arc::new(BooleanArray::from(vec![false]))
                }
                _ => new_null_array(field.data_type(), 1),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn read_rows(
    schema: &SchemaRef,
    log_no: i64,
    bytes: &[u8],
    limits: LogLimits,
    batch_size: usize,
) -> std::result::Result<Vec<RecordBatch>, LogProblem> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(bytes.len() as u64, limits));
    }
    let unix = mac_lines_as_unix(bytes);
    let (header, body) = read_header(unix.as_deref().unwrap_or(bytes))?;
    // Count before allocating anything per row: one small file of millions of
    // one-cell rows must not take the run's memory.
    let lines = memchr::memchr_iter(b'\n', body).count() as u64
        + u64::from(!body.is_empty() && !body.ends_with(b"\n"));
    if lines > limits.max_rows {
        return Err(format!(
            "{TOO_LARGE}: {lines} rows, limit {}.",
            limits.max_rows
        ));
    }
    let capacity = lines as usize;
    let mut line_no: Vec<i64> = Vec::with_capacity(capacity);
    let mut ts: Vec<Option<i64>> = Vec::with_capacity(capacity);
    let mut values: Vec<Float64Builder> = NUMERIC
        .iter()
        .map(|_| Float64Builder::with_capacity(capacity))
        .collect();
    let mut row: Vec<Option<f64>> = vec![None; NUMERIC.len()];

    // One pass over every separator of the body: `;` ends a cell, `\n` a line.
    let width = header.numeric_at.len();
    let (mut date, mut time): (&[u8], &[u8]) = (b"", b"");
    let mut line_start = 0;
    let mut cell_start = 0;
    let mut pos = 0;
    let mut index = 1; // the header is line 1
    // Separators are a few bytes apart: a plain scan beats a SIMD search here.
    let separators = body
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b';' || **b == b'\n')
        .map(|(i, _)| i)
        .chain(std::iter::once(body.len()));
    for sep in separators {
        let ends_line = sep == body.len() || body[sep] == b'\n';
        if pos < width {
            let mut cell = &body[cell_start..sep];
            if ends_line {
                cell = trim_cr(cell);
            }
            if pos == header.date {
                date = cell;
            } else if pos == header.time {
                time = cell;
            } else if let Some(col) = header.numeric_at[pos] {
                row[col] = parse_number(cell);
            }
        }
        cell_start = sep + 1;
        pos += 1;
        if !ends_line {
            continue;
        }
        index += 1;
        let line = &body[line_start..sep];
        line_start = sep + 1;
        if !line.trim_ascii().is_empty() {
            line_no.push(index);
            ts.push(parse_timestamp(date, time));
            for (builder, value) in values.iter_mut().zip(&row) {
                builder.append_option(*value);
            }
        }
        row.iter_mut().for_each(|v| *v = None);
        (date, time) = (b"", b"");
        pos = 0;
    }

    let n = ts.len();
    let key = |i: &u32| {
        let i = *i as usize;
        (ts[i].is_none(), ts[i], line_no[i])
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Logs are nearly always written in time order: sort only when needed.
    let sorted = order.windows(2).all(|w| key(&w[0]) <= key(&w[1]));
    if !sorted {
        order.sort_by_key(key);
    }
    let mut numeric: Vec<ArrayRef> = values
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let mut line_col: ArrayRef = Arc::new(Int64Array::from(line_no));
    let mut ts_col: ArrayRef = Arc::new(TimestampNanosecondArray::from(ts));
    if !sorted {
        let indices = UInt32Array::from(order);
        let reorder = |c: &ArrayRef| take(c.as_ref(), &indices, None);
        line_col = reorder(&line_col).map_err(|e| e.to_string())?;
        ts_col = reorder(&ts_col).map_err(|e| e.to_string())?;
        numeric = numeric
            .iter()
            .map(reorder)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| e.to_string())?;
    }
    let mut numeric = numeric.into_iter();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "log_no" => Arc::new(Int64Array::from_value(log_no, n)),
                "line" => line_col.clone(),
                "ts" => ts_col.clone(),
                "has_speed_column" => Arc::new(BooleanArray::from(vec![header.has_speed; n])),
                "has_oil_temp_column" => Arc::new(BooleanArray::from(vec![header.has_oil_temp; n])),
                "problem" => new_null_array(&DataType::Utf8, n),
                _ => numeric
                    .next()
                    .unwrap_or_else(|| new_null_array(field.data_type(), n)),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let batch_size = batch_size.max(1);
    Ok((0..n)
        .step_by(batch_size)
        .map(|start| batch.slice(start, batch_size.min(n - start)))
        .collect())
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Latin1 → UTF-8: every byte is the code point of the same value.
pub fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if bytes.is_ascii() => s.to_owned(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}
