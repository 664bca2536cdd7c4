//! Averages over groups of analysis objects, as the backend asks for them.
//!
//! An `average.request` carries the stored analysis objects themselves (read
//! back from PostgreSQL jsonb: any key order, `4.0` as `4`, `{}` or `null` for
//! a row with no values). They are flattened back into the metric columns of
//! `log_analysis.sql` and averaged by the same `group_average.sql` the batch
//! job runs.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Map, Value};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::shape;

/// The columns of `group_members`: the group key (`user_id`, `type`, `year`,
/// `month`), then every analysis metric (DOUBLE, text for the date) and the
/// flags of objects that may be null.
pub fn members_schema() -> SchemaRef {
    let nodes = shape::analysis();
    let text: HashSet<String> = shape::leaf_columns(nodes)
        .into_iter()
        .filter_map(|(c, t)| t.then_some(c))
        .collect();
    let flags: HashSet<String> = shape::flag_columns(nodes).into_iter().collect();
    let mut columns = Vec::new();
    shape::flatten(nodes, &Value::Null, &mut columns);
    let mut fields = vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("year", DataType::Int64, true),
        Field::new("month", DataType::Int64, true),
    ];
    fields.extend(columns.into_iter().map(|(name, _)| {
        let data_type = if flags.contains(&name) {
            DataType::Boolean
        } else if text.contains(&name) {
            DataType::Utf8
        } else {
            DataType::Float64
        };
        Field::new(name, data_type, true)
    }));
    Arc::new(Schema::new(fields))
}

/// The key of one group of analyses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub user_id: String,
    /// `OVERALL`, `YEARLY` or `MONTHLY`.
    pub kind: String,
    pub year: Option<i64>,
    pub month: Option<i64>,
}

/// Builds `group_members` from analysis objects: `(group, analysis)` pairs.
pub fn members_from_json(members: &[(GroupKey, Value)]) -> Result<RecordBatch> {
    let schema = members_schema();
    let nodes = shape::analysis();
    let rows: Vec<Vec<(String, Value)>> = members
        .iter()
        .map(|(_, analysis)| {
            let mut row = Vec::new();
            shape::flatten(nodes, analysis, &mut row);
            row
        })
        .collect();
    let keys = members.iter().map(|(k, _)| k);
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            keys.clone().map(|k| k.user_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            keys.clone().map(|k| k.kind.as_str()),
        )),
        Arc::new(Int64Array::from_iter(keys.clone().map(|k| k.year))),
        Arc::new(Int64Array::from_iter(keys.map(|k| k.month))),
    ];
    const KEY_COLUMNS: usize = 4;
    for (index, field) in schema.fields().iter().enumerate().skip(KEY_COLUMNS) {
        let values = rows.iter().map(|row| &row[index - KEY_COLUMNS].1);
        let array: ArrayRef = match field.data_type() {
            DataType::Boolean => Arc::new(values.map(Value::as_bool).collect::<BooleanArray>()),
            DataType::Utf8 => Arc::new(values.map(Value::as_str).collect::<StringArray>()),
            _ => Arc::new(
                values
                    .map(|v| v.as_f64().filter(|x| x.is_finite()))
                    .collect::<Float64Array>(),
            ),
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// An `average.request` as the backend sends it (envelope or bare `data`).
#[derive(Debug, Clone)]
pub struct AverageRequest {
    /// The echoed fields, verbatim (a request's sha is never recomputed).
    pub user_id: Value,
    pub kind: Value,
    pub year: Value,
    pub month: Value,
    pub analysis_sha: Value,
    /// The group's stored analysis objects; `{}` and `null` count as empty.
    pub analyses: Vec<Value>,
    /// Why the request cannot be averaged, if it cannot.
    pub problem: Option<String>,
}

impl AverageRequest {
    /// Reads a request; what is wrong with it lands in `problem`.
    pub fn parse(payload: &Value) -> Self {
        let data = match payload.get("data") {
            Some(data) if payload.get("pattern").is_some() => data,
            _ => payload,
        };
        let field = |k: &str| data.get(k).cloned().unwrap_or(Value::Null);
        let (analyses, problem) = match data.get("analysis") {
            _ if !data.is_object() => (
                Vec::new(),
                Some("The average request is not a JSON object."),
            ),
            Some(Value::Array(items)) if items.is_empty() => (
                Vec::new(),
                Some("The average request's analysis list is empty."),
            ),
            Some(Value::Array(items)) => (items.clone(), None),
            _ => (
                Vec::new(),
                Some("The average request has no `analysis` list to average."),
            ),
        };
        Self {
            user_id: field("userId"),
            kind: field("type"),
            year: field("year"),
            month: field("month"),
            analysis_sha: field("analysisSha"),
            analyses,
            problem: problem.map(str::to_string),
        }
    }

    /// The `average.result` for a computed average (`None`: `FAILED`).
    pub fn result(&self, outcome: std::result::Result<Map<String, Value>, String>) -> Value {
        let (status, message, average) = match outcome {
            Ok(average) => (
                "SUCCESS",
                "Average calculated successfully.".to_string(),
                average,
            ),
            Err(message) => ("FAILED", message, Map::new()),
        };
        serde_json::json!({
            "userId": self.user_id,
            "type": self.kind,
            "year": self.year,
            "month": self.month,
            "analysisSha": self.analysis_sha,
            "status": status,
            "message": crate::message::clip(&message),
            "average": average,
        })
    }
}

/// Answers an `average.request` payload with its `average.result`.
pub async fn answer(engine: &Engine, payload: &Value) -> Result<Value> {
    let request = AverageRequest::parse(payload);
    if let Some(problem) = &request.problem {
        return Ok(request.result(Err(problem.clone())));
    }
    let key = GroupKey {
        user_id: "request".into(),
        kind: "REQUEST".into(),
        year: None,
        month: None,
    };
    let members: Vec<(GroupKey, Value)> = request
        .analyses
        .iter()
        .map(|a| (key.clone(), a.clone()))
        .collect();
    let averages = engine.average(members_from_json(&members)?).await?;
    if averages.num_rows() != 1 {
        return Err(EngineError::Request(format!(
            "expected one average row, got {}",
            averages.num_rows()
        )));
    }
    Ok(request.result(Ok(shape::to_json(shape::average(), &averages, 0))))
}
