//! One log file, read into Arrow: its header (which contract columns it has)
//! and its rows (typed, ordered by time).
//!
//! Reading never fails on content: a latin1 byte, a ragged row or a garbage
//! cell only turns that cell into null. What makes a whole log unusable (empty
//! file, no header, no Date/Time column) is reported as a [`LogProblem`] text
//! that ends up in the `Failed` analysis.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;

use super::columns::{DATE, NUMERIC, TIME};
use super::text::{parse_number, parse_timestamp};

/// Why a log cannot be analysed at all, in words for the driver.
pub type LogProblem = String;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where each contract column sits in a log's rows.
#[derive(Debug, Clone)]
pub struct LogHeader {
    /// Every header name as written (latin1 decoded), for `log_files.columns`.
    pub names: Vec<String>,
    date: usize,
    time: usize,
    /// For each field position, the index into [`NUMERIC`] it feeds.
    numeric_at: Vec<Option<usize>>,
}

/// Strips a UTF-8 BOM: the reference failed on it, the contract wants it ignored.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Reads the header line of a log (the bytes may hold only the file's start).
pub fn read_header(bytes: &[u8]) -> std::result::Result<LogHeader, LogProblem> {
    let bytes = strip_bom(bytes);
    if bytes.is_empty() {
        return Err("The file is empty (0 bytes): there is no log to analyse.".into());
    }
    let line = trim_cr(bytes.split(|&b| b == b'\n').next().unwrap_or_default());
    if line.iter().any(|&b| b == 0 || (b < 0x09)) {
        return Err("The file is not a CSV log: it contains binary data.".into());
    }
    if line.trim_ascii().is_empty() {
        return Err("The log has no header line: its first line is empty.".into());
    }
    let names: Vec<String> = line.split(|&b| b == b';').map(latin1).collect();
    let position = |name: &str| names.iter().position(|n| n == name);
    let (date, time) = match (position(DATE), position(TIME)) {
        (Some(d), Some(t)) => (d, t),
        (None, None) => {
            return Err(
                "The log has no Date and no Time column, so its rows cannot be placed in time."
                    .into(),
            );
        }
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
    Ok(LogHeader {
        names,
        date,
        time,
        numeric_at,
    })
}

/// Parses every data row of a log into record batches of at most `batch_size`
/// rows, ordered by (timestamp, line), rows without a valid timestamp last.
pub fn read_rows(
    schema: &SchemaRef,
    log_id: &str,
    bytes: &[u8],
    header: &LogHeader,
    batch_size: usize,
) -> Result<Vec<RecordBatch>> {
    let bytes = strip_bom(bytes);
    let mut lines_no: Vec<u32> = Vec::new();
    let mut ts: Vec<Option<i64>> = Vec::new();
    let mut values: Vec<Float64Builder> = NUMERIC.iter().map(|_| Float64Builder::new()).collect();
    let mut row: Vec<Option<f64>> = vec![None; NUMERIC.len()];

    for (index, line) in bytes.split(|&b| b == b'\n').enumerate().skip(1) {
        let line = trim_cr(line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        row.iter_mut().for_each(|v| *v = None);
        let (mut date, mut time): (&[u8], &[u8]) = (b"", b"");
        for (pos, cell) in line.split(|&b| b == b';').enumerate() {
            if pos == header.date {
                date = cell;
            } else if pos == header.time {
                time = cell;
            } else if let Some(Some(col)) = header.numeric_at.get(pos) {
                row[*col] = parse_number(cell);
            }
        }
        lines_no.push(u32::try_from(index + 1).unwrap_or(u32::MAX));
        ts.push(parse_timestamp(date, time));
        for (builder, value) in values.iter_mut().zip(&row) {
            builder.append_option(*value);
        }
    }

    let n = ts.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Logs are nearly always written in time order: sort only when needed.
    let key = |i: &u32| {
        (
            ts[*i as usize].is_none(),
            ts[*i as usize],
            lines_no[*i as usize],
        )
    };
    let sorted = order.windows(2).all(|w| key(&w[0]) <= key(&w[1]));
    if !sorted {
        order.sort_by_key(key);
    }

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(3 + NUMERIC.len());
    columns.push(Arc::new(StringArray::from(vec![log_id; n])));
    columns.push(Arc::new(Int64Array::from_iter_values(
        lines_no.iter().map(|&l| i64::from(l)),
    )));
    columns.push(Arc::new(TimestampNanosecondArray::from(ts)));
    for mut builder in values {
        columns.push(Arc::new(builder.finish()));
    }
    if !sorted {
        let indices = UInt32Array::from(order);
        columns = columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?;
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
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
