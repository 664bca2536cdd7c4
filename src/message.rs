//! The wire messages of messages.md, built from engine results.

use datafusion::arrow::array::{AsArray, RecordBatch};
use serde_json::{Map, Value, json};

use crate::shape;

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

/// The `analysis.result` of row `row` of a `log_analysis` batch.
pub fn analysis_result(batch: &RecordBatch, row: usize) -> Value {
    let text = |name: &str| match shape::cell(batch, name, row) {
        Value::String(s) => s,
        _ => String::new(),
    };
    let success = text("status") == "Success";
    let analysis = if success {
        shape::to_json(shape::analysis(), batch, row)
    } else {
        Map::new()
    };
    let fap_regen = analysis.get("fapRegen").is_some_and(Value::is_object);
    let log_date = analysis
        .get("overall")
        .and_then(|o| o.get("date"))
        .and_then(|d| d.get("date"))
        .cloned()
        .unwrap_or(Value::Null);
    let distance = analysis
        .get("overall")
        .and_then(|o| o.get("distance_km"))
        .filter(|d| d.as_f64().is_some_and(|d| d.abs() < 1e8))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "analysisId": text("log_id"),
        "status": if success { "Success" } else { "Failed" },
        "message": clip(&text("message")),
        "analysis": analysis,
        "fapRegen": fap_regen,
        "logDate": log_date,
        "distance": distance,
    })
}

/// The status column of a `log_analysis` batch, for counting.
pub fn failed_rows(batch: &RecordBatch) -> usize {
    batch
        .column_by_name("status")
        .and_then(|c| c.as_string_opt::<i32>())
        .map_or(0, |s| s.iter().filter(|s| *s == Some("Failed")).count())
}
