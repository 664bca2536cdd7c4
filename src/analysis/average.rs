//! Averages over groups of analyses (analysis.md §5): `group_average.sql`
//! and `group_average_bands.sql`, shared by the batch job (members from the
//! snapshot's tables) and the live worker (members from the objects an
//! `average.request` carries).
//!
//! A request carries the stored analysis objects themselves (read back from
//! PostgreSQL jsonb: any key order, `4.0` as `4`, `{}` or `null` for a row
//! with no values). They are flattened back into the metric columns of
//! `log_analysis.sql` (and their speed bands into rows) and averaged by the
//! same SQL the batch job runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use futures::TryStreamExt;
use serde_json::{Map, Value};

use super::engine::Engine;
use super::error::{EngineError, Result};
use super::prepared::{Input, Prepared, register_input};
use super::shape::{self, BANDS, Bound, band_column, band_name};

/// The columns of `group_members` for objects from JSON: the group key
/// (`user_id`, `type`, `year`, `month`), `analysis_id`, then every analysis
/// metric (DOUBLE, text for the date) and the flags of objects that may be
/// null.
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
        Field::new("analysis_id", DataType::Utf8, false),
    ];
    fields.extend(
        columns
            .into_iter()
            .filter(|(name, _)| !name.starts_with("band_"))
            .map(|(name, _)| {
                let data_type = if flags.contains(&name) {
                    DataType::Boolean
                } else if text.contains(&name) {
                    DataType::Utf8
                } else {
                    DataType::Float64
                };
                Field::new(name, data_type, true)
            }),
    );
    Arc::new(Schema::new(fields))
}

/// The columns of `group_member_bands`.
pub fn member_bands_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("year", DataType::Int64, true),
        Field::new("month", DataType::Int64, true),
        Field::new("analysis_id", DataType::Utf8, false),
        Field::new("band", DataType::Utf8, false),
        Field::new("min_kmh", DataType::Int32, false),
        Field::new("max_kmh", DataType::Int32, true),
        Field::new("distance_km", DataType::Float64, true),
        Field::new("l100km", DataType::Float64, true),
    ]))
}

/// The key of one group of analyses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub user_id: String,
    /// `OVERALL`, `YEARLY`, `MONTHLY` (or a request's own label).
    pub kind: String,
    pub year: Option<i64>,
    pub month: Option<i64>,
}

impl GroupKey {
    /// The groups an analysis of `log_date` (`YYYY-MM-DD`) belongs to.
    pub fn all_for(user_id: &str, log_date: Option<&str>) -> Vec<GroupKey> {
        let key = |kind: &str, year, month| GroupKey {
            user_id: user_id.to_string(),
            kind: kind.to_string(),
            year,
            month,
        };
        let mut keys = vec![key("OVERALL", None, None)];
        let mut parts = log_date.unwrap_or_default().split('-');
        if let (Some(Ok(y)), Some(Ok(m))) =
            (parts.next().map(str::parse), parts.next().map(str::parse))
        {
            keys.push(key("YEARLY", Some(y), None));
            keys.push(key("MONTHLY", Some(y), Some(m)));
        }
        keys
    }

    /// The key of row `row` of a batch with `user_id, type, year, month`.
    pub fn of_row(batch: &RecordBatch, row: usize) -> GroupKey {
        let text = |name: &str| {
            shape::cell(batch, name, row)
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let int = |name: &str| shape::cell(batch, name, row).as_i64();
        GroupKey {
            user_id: text("user_id"),
            kind: text("type"),
            year: int("year"),
            month: int("month"),
        }
    }
}

/// `group_members` and `group_member_bands` rows (of the given schemas) for
/// analysis objects: `(group, analysis id, object)`.
pub fn members_from_json(
    members: &[(GroupKey, String, &Value)],
    members_schema: &SchemaRef,
    bands_schema: &SchemaRef,
) -> Result<(RecordBatch, RecordBatch)> {
    let nodes = shape::analysis();
    let mut rows: Vec<HashMap<String, Value>> = Vec::with_capacity(members.len());
    let mut band_rows: Vec<HashMap<String, Value>> = Vec::new();
    for (key, id, analysis) in members {
        let mut flat = Vec::new();
        shape::flatten(nodes, analysis, &mut flat);
        let mut row: HashMap<String, Value> = flat.into_iter().collect();
        let key_values = [
            ("user_id", Value::from(key.user_id.clone())),
            ("type", Value::from(key.kind.clone())),
            ("year", key.year.map_or(Value::Null, Value::from)),
            ("month", key.month.map_or(Value::Null, Value::from)),
            ("analysis_id", Value::from(id.clone())),
        ];
        for band in BANDS {
            let km = row
                .get(&band_column("_{}_km", band))
                .cloned()
                .unwrap_or(Value::Null);
            let l100km = row
                .get(&band_column("{}_l100km", band))
                .cloned()
                .unwrap_or(Value::Null);
            if km.is_null() && l100km.is_null() {
                continue;
            }
            let (min, max) = band_bounds(band);
            let mut band_row: HashMap<String, Value> = key_values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            band_row.insert("band".into(), Value::from(band));
            band_row.insert("min_kmh".into(), Value::from(min));
            band_row.insert("max_kmh".into(), max.map_or(Value::Null, Value::from));
            band_row.insert("distance_km".into(), km);
            band_row.insert("l100km".into(), l100km);
            band_rows.push(band_row);
        }
        row.insert("status".into(), Value::from("Success"));
        for (k, v) in key_values {
            row.insert(k.to_string(), v);
        }
        if let Some(date) = row.get("overall_date_date").and_then(Value::as_str) {
            let mut parts = date.split('-');
            if let (Some(Ok(y)), Some(Ok(m))) = (
                parts.next().map(str::parse::<i64>),
                parts.next().map(str::parse::<i64>),
            ) {
                row.insert("log_year".into(), Value::from(y));
                row.insert("log_month".into(), Value::from(m));
            }
        }
        rows.push(row);
    }
    Ok((
        rows_to_batch(&rows, members_schema)?,
        rows_to_batch(&band_rows, bands_schema)?,
    ))
}

/// The bounds of a speed band label: `35-45` → (35, Some(45)), `200+` →
/// (200, None).
pub fn band_bounds(label: &str) -> (i32, Option<i32>) {
    match label.split_once('-') {
        Some((lo, hi)) => (lo.parse().unwrap_or(0), hi.parse().ok()),
        None => (label.trim_end_matches('+').parse().unwrap_or(0), None),
    }
}

/// Rows of JSON values (by column name) as a batch of `schema`; a value of
/// the wrong kind, or a column the rows lack, is null.
fn rows_to_batch(rows: &[HashMap<String, Value>], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let values = rows
                .iter()
                .map(|r| r.get(field.name()).unwrap_or(&Value::Null));
            let number = |v: &Value| v.as_f64().filter(|x| x.is_finite());
            match field.data_type() {
                DataType::Int64 => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    values.for_each(|v| b.append_option(number(v).map(|x| x as i64)));
                    Arc::new(b.finish())
                }
                DataType::Int32 => {
                    let mut b = Int32Builder::with_capacity(rows.len());
                    values.for_each(|v| b.append_option(number(v).map(|x| x as i32)));
                    Arc::new(b.finish())
                }
                DataType::Float64 => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    values.for_each(|v| b.append_option(number(v)));
                    Arc::new(b.finish())
                }
                DataType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    values.for_each(|v| b.append_option(v.as_bool()));
                    Arc::new(b.finish())
                }
                DataType::Utf8 => {
                    let mut b = StringBuilder::new();
                    values.for_each(|v| b.append_option(v.as_str()));
                    Arc::new(b.finish())
                }
                other => datafusion::arrow::array::new_null_array(other, rows.len()),
            }
        })
        .collect();
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    // Non-null fields given nulls (a key a row lacks) would fail: relax them.
    let relaxed = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new_with_options(relaxed, columns, &options)?;
    Ok(match batch.clone().with_schema(schema.clone()) {
        Ok(strict) => strict,
        Err(_) => batch,
    })
}

/// `group_average` and `group_average_bands`, planned once over members of
/// given schemas and run on any number of groups at a time.
#[derive(Debug, Clone)]
pub struct Averager {
    members: SchemaRef,
    member_bands: SchemaRef,
    averages: Prepared,
    bands: Prepared,
}

impl Averager {
    pub async fn new(engine: &Engine, members: SchemaRef, member_bands: SchemaRef) -> Result<Self> {
        let ctx = engine.serial_context();
        register_input(&ctx, "group_members", &members, vec![])?;
        register_input(&ctx, "group_member_bands", &member_bands, vec![])?;
        engine.register_model(&ctx, "group_average").await?;
        engine.register_model(&ctx, "group_average_bands").await?;
        Ok(Self {
            averages: Prepared::new(&ctx, "group_average").await?,
            bands: Prepared::new(&ctx, "group_average_bands").await?,
            members,
            member_bands,
        })
    }

    /// For the live worker: members from JSON objects.
    pub async fn for_requests(engine: &Engine) -> Result<Self> {
        Self::new(engine, members_schema(), member_bands_schema()).await
    }

    pub fn members_schema(&self) -> &SchemaRef {
        &self.members
    }

    pub fn member_bands_schema(&self) -> &SchemaRef {
        &self.member_bands
    }

    /// The columns of `group_average` rows.
    pub fn averages_schema(&self) -> SchemaRef {
        self.averages.plan().schema()
    }

    /// The columns of `group_average_bands` rows.
    pub fn bands_schema(&self) -> SchemaRef {
        self.bands.plan().schema()
    }

    /// The averages of the groups in `members` and `member_bands`: one
    /// `group_average` row per group, and its speed bands.
    ///
    /// Members are sorted by group, then `analysis_id`, whatever order they
    /// come in: a float sum depends on its order, and a group's average must
    /// not depend on which run (full or incremental, local or distributed)
    /// computed it; groups come out in that order too. A live request's
    /// members are numbered in its order, as the old service summed them.
    pub async fn run(
        &self,
        members: Vec<RecordBatch>,
        member_bands: Vec<RecordBatch>,
    ) -> Result<(RecordBatch, Vec<RecordBatch>)> {
        let members = sorted(&self.members, &members, &MEMBER_ORDER)?;
        let member_bands = sorted(&self.member_bands, &member_bands, &BAND_ORDER)?;
        let averages = self
            .averages
            .execute(&[Input::Table(self.members.clone(), members)])?;
        let schema = averages.schema();
        let averages: Vec<RecordBatch> = averages.try_collect().await?;
        let bands: Vec<RecordBatch> = self
            .bands
            .execute(&[Input::Table(self.member_bands.clone(), member_bands)])?
            .try_collect()
            .await?;
        Ok((concat_batches(&schema, &averages)?, bands))
    }
}

/// The order members are averaged in (see [`Averager::run`]).
const MEMBER_ORDER: [&str; 5] = ["user_id", "type", "year", "month", "analysis_id"];
const BAND_ORDER: [&str; 6] = ["user_id", "type", "year", "month", "analysis_id", "band"];

/// `batches` as one batch sorted by the columns `keys` (a total order on
/// members: no two rows share them all). Keys are compared as Arrow's row
/// format (bytes), several times faster than column by column.
fn sorted(schema: &SchemaRef, batches: &[RecordBatch], keys: &[&str]) -> Result<Vec<RecordBatch>> {
    let all = concat_batches(schema, batches)?;
    let columns = keys
        .iter()
        .map(|key| {
            all.column_by_name(key)
                .cloned()
                .ok_or_else(|| EngineError::Request(format!("members have no {key}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let fields = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let rows = RowConverter::new(fields)?.convert_columns(&columns)?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    Ok(vec![take_record_batch(&all, &UInt32Array::from(order))?])
}

/// The average object of each row of `averages` as sent, its speed bands
/// taken from `bands` (rows of `group_average_bands`, matched by group key).
pub fn average_objects(averages: &RecordBatch, bands: &[RecordBatch]) -> Result<Vec<String>> {
    let mut by_group: HashMap<(GroupKey, String), f64> = HashMap::new();
    for batch in bands {
        let labels = batch
            .column_by_name("band")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| EngineError::Request("group_average_bands has no band".into()))?;
        let l100km = batch
            .column_by_name("l100km")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or_else(|| EngineError::Request("group_average_bands has no l100km".into()))?;
        for row in 0..batch.num_rows() {
            if l100km.is_valid(row) {
                by_group.insert(
                    (GroupKey::of_row(batch, row), labels.value(row).to_string()),
                    l100km.value(row),
                );
            }
        }
    }
    // The bands as the columns the layout reads.
    let mut fields: Vec<Field> = averages
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = averages.columns().to_vec();
    let keys: Vec<GroupKey> = (0..averages.num_rows())
        .map(|r| GroupKey::of_row(averages, r))
        .collect();
    for band in BANDS {
        let name = format!("band_{}_l100km", band_name(band));
        let mut b = Float64Builder::with_capacity(keys.len());
        for key in &keys {
            b.append_option(by_group.get(&(key.clone(), band.to_string())).copied());
        }
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(b.finish()));
    }
    let wide = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let layout = Bound::new(shape::average(), &wide.schema());
    Ok((0..wide.num_rows())
        .map(|row| {
            let mut text = String::new();
            layout.write_json(&wide, row, &mut text);
            text
        })
        .collect())
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
        let problem = problem
            .map(str::to_string)
            .or_else(|| key_problem(data))
            .or_else(|| analyses_problem(&analyses));
        Self {
            user_id: field("userId"),
            kind: field("type"),
            year: field("year"),
            month: field("month"),
            analysis_sha: field("analysisSha"),
            analyses,
            problem,
        }
    }

    /// The `average.result` for a computed average (`Err`: `FAILED`).
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
            "message": super::message::clip(&message),
            "average": average,
        })
    }
}

/// What is wrong with a request's group key: without a `userId` and a known
/// `type`, the backend could not store the result anywhere.
fn key_problem(data: &Value) -> Option<String> {
    match (data.get("userId"), data.get("type").and_then(Value::as_str)) {
        (Some(Value::String(id)), _) if id.is_empty() => {
            Some("The average request's userId is empty.".into())
        }
        (Some(Value::String(_)), Some("OVERALL" | "YEARLY" | "MONTHLY")) => None,
        (Some(Value::String(_)), _) => Some(format!(
            "The average request's type is {}; expected OVERALL, YEARLY or MONTHLY.",
            data.get("type").map_or("missing".into(), Value::to_string)
        )),
        (None | Some(Value::Null), _) => Some("The average request has no userId.".into()),
        (Some(other), _) => Some(format!(
            "The average request's userId is {}, not a text.",
            shape::json_kind(other)
        )),
    }
}

/// The first analysis of a request that cannot be averaged: an item that is
/// not an object (`{}` and `null` are empty analyses), or a metric that is
/// not a number. Averaging it as "no value" would send a wrong average as a
/// success.
fn analyses_problem(analyses: &[Value]) -> Option<String> {
    let total = analyses.len();
    analyses.iter().enumerate().find_map(|(i, item)| {
        let n = i + 1;
        match item {
            Value::Null => None,
            Value::Object(_) => shape::first_mistyped(shape::analysis(), item).map(|(path, kind)| {
                format!(
                    "The average request's analysis {n} of {total} has {kind} at {path}, which cannot be averaged."
                )
            }),
            other => Some(format!(
                "The average request's analysis {n} of {total} is {}, not an analysis object.",
                shape::json_kind(other)
            )),
        }
    })
}

/// Answers several `average.request` payloads in one run of the averages:
/// each request is its own group.
pub async fn answer_all(averager: &Averager, payloads: &[Value]) -> Result<Vec<Value>> {
    let requests: Vec<AverageRequest> = payloads.iter().map(AverageRequest::parse).collect();
    let mut members = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        if request.problem.is_some() {
            continue;
        }
        let key = GroupKey {
            user_id: format!("request-{index}"),
            kind: "REQUEST".into(),
            year: None,
            month: None,
        };
        for (n, analysis) in request.analyses.iter().enumerate() {
            // Ids sort in request order: the order the members are summed in.
            members.push((key.clone(), format!("{index:010}-{n:010}"), analysis));
        }
    }
    let (rows, bands) = members_from_json(
        &members,
        averager.members_schema(),
        averager.member_bands_schema(),
    )?;
    let (averages, band_rows) = averager.run(vec![rows], vec![bands]).await?;
    let objects = average_objects(&averages, &band_rows)?;
    let mut by_request: HashMap<String, Map<String, Value>> = HashMap::new();
    for (row, object) in objects.into_iter().enumerate() {
        let key = GroupKey::of_row(&averages, row);
        if let Ok(Value::Object(map)) = serde_json::from_str(&object) {
            by_request.insert(key.user_id, map);
        }
    }
    Ok(requests
        .iter()
        .enumerate()
        .map(|(index, request)| match &request.problem {
            Some(problem) => request.result(Err(problem.clone())),
            None => match by_request.remove(&format!("request-{index}")) {
                Some(average) => request.result(Ok(average)),
                None => request.result(Err("The average could not be calculated.".into())),
            },
        })
        .collect())
}

/// Answers one `average.request` payload with its `average.result`.
pub async fn answer(averager: &Averager, payload: &Value) -> Result<Value> {
    let mut all = answer_all(averager, std::slice::from_ref(payload)).await?;
    all.pop()
        .ok_or_else(|| EngineError::Request("no answer for the request".into()))
}
