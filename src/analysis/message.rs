//! The wire messages of messages.md, written from engine results.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use serde_json::Value;

use super::average::GroupKey;
use super::shape::{self, Bound};

/// The longest message the backend's column accepts.
pub const MAX_MESSAGE: usize = 255;

/// Cuts a message to at most 255 characters (a longer one loses the result).
pub fn clip(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut out: String = message.chars().take(MAX_MESSAGE - 1).collect();
    out.push('…');
    out
}

/// Writes the messages of `log_analysis` rows: a layout bound once to the
/// batches' schema, then plain array indexing per row.
#[derive(Debug, Clone)]
pub struct AnalysisWriter {
    bound: Bound,
    log_id: usize,
    status: usize,
    message: usize,
    fap_regen: Option<usize>,
    date: Option<usize>,
    distance: Option<usize>,
}

impl AnalysisWriter {
    /// For batches of `schema` (the columns of `log_analysis.sql`).
    pub fn new(schema: &SchemaRef) -> datafusion::error::Result<Self> {
        let index = |name: &str| schema.index_of(name).ok();
        Ok(Self {
            bound: Bound::new(shape::analysis(), schema),
            log_id: schema.index_of("log_id")?,
            status: schema.index_of("status")?,
            message: schema.index_of("message")?,
            fap_regen: index("fap_regen"),
            date: index("overall_date_date"),
            distance: index("overall_distance_km"),
        })
    }

    pub fn log_id<'a>(&self, batch: &'a RecordBatch, row: usize) -> &'a str {
        text(batch, self.log_id, row).unwrap_or_default()
    }

    pub fn is_success(&self, batch: &RecordBatch, row: usize) -> bool {
        text(batch, self.status, row) == Some("Success")
    }

    /// The analysis object as sent (`{}` for a failed log).
    pub fn write_analysis(&self, batch: &RecordBatch, row: usize, out: &mut String) {
        if self.is_success(batch, row) {
            self.bound.write_json(batch, row, out);
        } else {
            out.push_str("{}");
        }
    }

    /// The analysis object as the backend prints it back from jsonb.
    pub fn write_analysis_jsonb(&self, batch: &RecordBatch, row: usize, out: &mut String) {
        if self.is_success(batch, row) {
            self.bound.write_jsonb(batch, row, out);
        } else {
            out.push_str("{}");
        }
    }

    /// The log's message (why it failed, or the success text).
    pub fn message<'a>(&self, batch: &'a RecordBatch, row: usize) -> &'a str {
        text(batch, self.message, row).unwrap_or_default()
    }

    /// The whole `analysis.result` payload.
    pub fn write_result(&self, batch: &RecordBatch, row: usize, out: &mut String) {
        let success = self.is_success(batch, row);
        let mut analysis = String::new();
        self.write_analysis(batch, row, &mut analysis);
        let fap_regen = success
            && self.fap_regen.is_some_and(|c| {
                let flags = batch.column(c);
                flags.data_type() == &DataType::Boolean
                    && flags.is_valid(row)
                    && flags.as_boolean().value(row)
            });
        let date = self
            .date
            .and_then(|c| text(batch, c, row))
            .filter(|_| success);
        let distance = self
            .distance
            .filter(|_| success)
            .map(|c| batch.column(c))
            .filter(|a| a.data_type() == &DataType::Float64 && a.is_valid(row))
            .map(|a| a.as_primitive::<Float64Type>().value(row));
        out.push_str(&result_payload(
            self.log_id(batch, row),
            success,
            self.message(batch, row),
            &analysis,
            fap_regen,
            date,
            distance,
        ));
    }

    /// The `analysis.result` of a row as a JSON value.
    pub fn result(&self, batch: &RecordBatch, row: usize) -> Value {
        let mut text = String::new();
        self.write_result(batch, row, &mut text);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// An `analysis.result` payload (messages.md): `analysis` is the object as
/// sent (`{}` for a failed log), `distance` is dropped unless finite and
/// below 1e8.
pub fn result_payload(
    analysis_id: &str,
    success: bool,
    message: &str,
    analysis: &str,
    fap_regen: bool,
    log_date: Option<&str>,
    distance: Option<f64>,
) -> String {
    let string = |s: &str| Value::from(s).to_string();
    let mut out = String::with_capacity(analysis.len() + 256);
    out.push_str("{\"analysisId\":");
    out.push_str(&string(analysis_id));
    out.push_str(",\"status\":");
    out.push_str(if success { "\"Success\"" } else { "\"Failed\"" });
    out.push_str(",\"message\":");
    out.push_str(&string(&clip(message)));
    out.push_str(",\"analysis\":");
    out.push_str(if success { analysis } else { "{}" });
    out.push_str(",\"fapRegen\":");
    out.push_str(if success && fap_regen {
        "true"
    } else {
        "false"
    });
    out.push_str(",\"logDate\":");
    match log_date.filter(|_| success) {
        Some(date) => out.push_str(&string(date)),
        None => out.push_str("null"),
    }
    out.push_str(",\"distance\":");
    match distance.filter(|d| success && d.is_finite() && d.abs() < 1e8) {
        Some(d) => out.push_str(ryu::Buffer::new().format_finite(d)),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// An `average.result` payload for a computed group.
pub fn average_payload(key: &GroupKey, analysis_sha: &str, average: &str) -> String {
    let string = |s: &str| Value::from(s).to_string();
    let int = |v: Option<i64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    format!(
        "{{\"userId\":{},\"type\":{},\"year\":{},\"month\":{},\"analysisSha\":{},\"status\":\"SUCCESS\",\"message\":\"Average calculated successfully.\",\"average\":{}}}",
        string(&key.user_id),
        string(&key.kind),
        int(key.year),
        int(key.month),
        string(analysis_sha),
        average
    )
}

fn text(batch: &RecordBatch, column: usize, row: usize) -> Option<&str> {
    let array = batch.column(column);
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
        DataType::Utf8View => Some(array.as_string_view().value(row)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
        _ => None,
    }
}

/// The `analysis.result` of row `row` of a `log_analysis` batch.
pub fn analysis_result(batch: &RecordBatch, row: usize) -> Value {
    match AnalysisWriter::new(&batch.schema()) {
        Ok(writer) => writer.result(batch, row),
        Err(_) => Value::Null,
    }
}

/// How many rows of `log_analysis` batches failed.
pub fn failed_rows(batch: &RecordBatch) -> usize {
    batch
        .column_by_name("status")
        .and_then(|c| c.as_string_opt::<i32>())
        .map_or(0, |s| s.iter().filter(|s| *s == Some("Failed")).count())
}

/// A failed `analysis.result` for a log that could not even be scanned.
pub fn failed_result(analysis_id: &str, why: &str) -> Value {
    serde_json::json!({
        "analysisId": analysis_id, "status": "Failed", "message": clip(why),
        "analysis": {}, "fapRegen": false, "logDate": null, "distance": null,
    })
}
