//! Between flat metric columns and the contract's nested JSON objects.
//!
//! The SQL returns one column per metric, named by its JSON path in
//! snake_case (`engine.battery.beforeDrive_v` is
//! `engine_battery_before_drive_v`; speed band `35-45` is `band_35_45_l100km`
//! and `band_35_45_km`). A layout, written below in the shape of the JSON
//! itself, says how those columns nest, in which key order, and which objects
//! vanish. Numbers print by Arrow type: BIGINT as an integer, DOUBLE as a
//! decimal; a non-finite value is printed as null, never NaN.
//!
//! Each row is written straight to text, two ways: as the object is sent
//! (the contract's key order) and as the backend prints it back from jsonb
//! (the bytes its `analysisSha` hashes). No `serde_json::Value` in between.
//!
//! Layout syntax: `key` a leaf (`key:text` a text leaf), `key { … }` an
//! object, `key ?{ … }` an object that is null as a whole (when a boolean
//! column named like the object is false, or else when every leaf is null),
//! `key [ {}_a _{}_b ]` the speed bands: for each band label the keys with `{}`
//! replaced, present only when the band's last key has a value.

use std::fmt::Write;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, SchemaRef};
use serde_json::{Map, Value};

use super::jsonb::write_js_number;

/// Speed band labels, in band order (analysis.md §4, fuelConsumption).
pub const BANDS: [&str; 21] = [
    "5-15", "15-25", "25-35", "35-45", "45-55", "55-65", "65-75", "75-85", "85-95", "95-105",
    "105-115", "115-125", "125-135", "135-145", "145-155", "155-165", "165-175", "175-185",
    "185-195", "195-200", "200+",
];

/// The analysis object of one log (analysis.md §4).
pub const ANALYSIS: &str = "
driving { acceleration { max_perc avg_perc } revs { min max avg avgDriving }
          speed { avg_kmh max_kmh min_kmh } }
engine {
  battery { beforeDrive_v engineRunning_v }
  coolantTemp { min_c max_c avg_c }
  engineWarmup { coolant_sec oil_sec }
  errors oilCarbonate_perc oilDilution_perc
  oilTemp { min_c max_c avg_c }
  injector { injector1 injector2 injector3 injector4 average }
  fuelPressure { avg_diff_idle_mbar }
  boost { avg_diff_mbar }
}
fap {
  additive { vol_ml remain_ml }
  deposits { percentage_perc weight_gram }
  lastRegen_km last10Regen_km
  life { life_km left_km }
  pressure_idle { avg_mbar max_mbar min_mbar }
  pressure { min_mbar max_mbar avg_mbar }
  soot { start_gl end_gl diff_gl }
  temp { min_c max_c avg_c }
}
fapRegen ?{
  previousRegen_km duration_sec distance_km
  speed ?{ min_kmh max_kmh avg_kmh }
  fapTemp ?{ min_c max_c avg_c }
  fapPressure ?{ min_mbar max_mbar avg_mbar }
  revs ?{ min max avg }
  fapSoot ?{ start_gl end_gl diff_gl }
  fuelConsumption { regen_l100km nonRegen_l100km }
}
fuelConsumption { overall { total_l avg_l100km } bySpeedRange [ {}_l100km _{}_km ] }
overall {
  distance_km
  duration { overall_sec engineOff_sec engineOn_sec idle_sec driving_sec }
  externalTemp { avg_c max_c min_c }
  date ?{ date:text start:text end:text }
}
";

/// The average object of a group of analyses (analysis.md §5).
pub const AVERAGE: &str = "
overall { distance_km duration { overall_sec engineOn_sec engineOff_sec idle_sec driving_sec } }
driving { acceleration { max_perc avg_perc } revs { min max avg avgDriving } speed { avg_kmh max_kmh } }
engine {
  battery { beforeDrive_v engineRunning_v }
  coolantTemp { min_c max_c avg_c }
  engineWarmup { coolant_sec oil_sec }
  errors { min max }
  oilCarbonate { min_perc max_perc }
  oilDilution { min_perc max_perc }
  oilTemp { min_c max_c avg_c }
  injector { injector1 injector2 injector3 injector4 average }
  fuelPressure { avg_diff_idle_mbar }
  boost { avg_diff_mbar }
}
fap { pressure { min_mbar max_mbar avg_mbar } pressure_idle { avg_mbar } temp { min_c max_c avg_c } }
fapRegen ?{
  numberOfRegens previousRegen_km duration_sec distance_km
  speed { min_kmh max_kmh avg_kmh }
  fapTemp { min_c max_c avg_c }
  fapPressure { min_mbar max_mbar avg_mbar }
  revs { min max avg }
  fapSoot { start_gl end_gl }
  fuelConsumption { regen_l100km nonRegen_l100km }
}
fuelConsumption { overall { total_l avg_l100km } bySpeedRange [ {}_l100km ] }
";

/// One node of a parsed layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A metric: JSON key and column name.
    Leaf {
        key: String,
        column: String,
        text: bool,
    },
    /// An object; `nullable` objects can be null as a whole (`column` is
    /// then the name of the boolean column that may decide it).
    Object {
        key: String,
        column: String,
        nullable: bool,
        children: Vec<Node>,
    },
    /// Speed bands: per label, the keys made from the templates.
    Bands { key: String, templates: Vec<String> },
}

/// The parsed analysis layout, parsed once per process.
pub fn analysis() -> &'static [Node] {
    static LAYOUT: std::sync::LazyLock<Vec<Node>> = std::sync::LazyLock::new(|| parse(ANALYSIS));
    &LAYOUT
}

/// The parsed average layout, parsed once per process.
pub fn average() -> &'static [Node] {
    static LAYOUT: std::sync::LazyLock<Vec<Node>> = std::sync::LazyLock::new(|| parse(AVERAGE));
    &LAYOUT
}

/// camelCase → snake_case (`beforeDrive_v` → `before_drive_v`).
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A band label as a name part: `35-45` → `35_45`, `200+` → `200_plus`.
pub fn band_name(label: &str) -> String {
    label.replace('-', "_").replace('+', "_plus")
}

/// The column of a band key template for one label: `_{}_km`, `35-45` →
/// `band_35_45_km`.
pub fn band_column(template: &str, label: &str) -> String {
    let key = template
        .trim_start_matches('_')
        .replace("{}", &band_name(label));
    format!("band_{key}")
}

/// Parses a layout (one of the constants above). Panics only on a malformed
/// constant, which the tests below catch.
pub fn parse(layout: &str) -> Vec<Node> {
    let tokens: Vec<&str> = layout.split_whitespace().collect();
    let mut pos = 0;
    let nodes = parse_nodes(&tokens, &mut pos, "");
    assert!(pos == tokens.len(), "layout: unexpected `{}`", tokens[pos]);
    nodes
}

fn parse_nodes(tokens: &[&str], pos: &mut usize, prefix: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    while let Some(&token) = tokens.get(*pos) {
        if token == "}" || token == "]" {
            break;
        }
        *pos += 1;
        let (key, text) = match token.strip_suffix(":text") {
            Some(k) => (k.to_string(), true),
            None => (token.to_string(), false),
        };
        let column = if prefix.is_empty() {
            snake(&key)
        } else {
            format!("{prefix}_{}", snake(&key))
        };
        match tokens.get(*pos).copied() {
            Some(open @ ("{" | "?{")) => {
                *pos += 1;
                let children = parse_nodes(tokens, pos, &column);
                assert_eq!(tokens.get(*pos), Some(&"}"), "layout: `{key}` not closed");
                *pos += 1;
                nodes.push(Node::Object {
                    key,
                    column,
                    nullable: open == "?{",
                    children,
                });
            }
            Some("[") => {
                *pos += 1;
                let mut templates = Vec::new();
                while let Some(&t) = tokens.get(*pos).filter(|t| **t != "]") {
                    templates.push(t.to_string());
                    *pos += 1;
                }
                *pos += 1;
                nodes.push(Node::Bands { key, templates });
            }
            _ => nodes.push(Node::Leaf { key, column, text }),
        }
    }
    nodes
}

/// Every metric column a layout names, in layout order, with whether it is text.
pub fn leaf_columns(nodes: &[Node]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for node in nodes {
        match node {
            Node::Leaf { column, text, .. } => out.push((column.clone(), *text)),
            Node::Object { children, .. } => out.extend(leaf_columns(children)),
            Node::Bands { templates, .. } => {
                for band in BANDS {
                    for t in templates {
                        out.push((band_column(t, band), false));
                    }
                }
            }
        }
    }
    out
}

/// The boolean columns that decide whether a nullable object exists.
pub fn flag_columns(nodes: &[Node]) -> Vec<String> {
    let mut out = Vec::new();
    for node in nodes {
        if let Node::Object {
            column,
            nullable,
            children,
            ..
        } = node
        {
            if *nullable {
                out.push(column.clone());
            }
            out.extend(flag_columns(children));
        }
    }
    out
}

/// The order in which jsonb stores (and `JSON.stringify` then prints) keys:
/// shorter first, then bytewise.
fn jsonb_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A layout bound to the columns of one schema: every lookup by name is done
/// once, so a batch's rows are written with array indexing only.
#[derive(Debug, Clone)]
pub struct Bound {
    root: Vec<BoundNode>,
    /// The root's children in jsonb order (indices into `root`).
    root_jsonb: Vec<usize>,
}

#[derive(Debug, Clone)]
enum BoundNode {
    Leaf {
        key: String,
        column: Option<usize>,
    },
    Object {
        key: String,
        flag: Option<usize>,
        nullable: bool,
        children: Vec<BoundNode>,
        jsonb: Vec<usize>,
    },
    Bands {
        key: String,
        /// Per band, the `(key, column)` of each template, in layout order.
        bands: Vec<Vec<(String, Option<usize>)>>,
        /// Every band key as `(band, template)`, in jsonb order.
        jsonb: Vec<(usize, usize)>,
    },
}

impl Bound {
    /// Binds `nodes` to `schema`; columns the schema lacks print as null.
    pub fn new(nodes: &[Node], schema: &SchemaRef) -> Self {
        let root = bind_nodes(nodes, schema);
        let root_jsonb = jsonb_indices(&root);
        Self { root, root_jsonb }
    }

    /// The object of `row` as sent (the contract's key order).
    pub fn write_json(&self, batch: &RecordBatch, row: usize, out: &mut String) {
        write_object(&self.root, None, batch, row, out, false);
    }

    /// The object of `row` as the backend prints it back from jsonb.
    pub fn write_jsonb(&self, batch: &RecordBatch, row: usize, out: &mut String) {
        write_object(&self.root, Some(&self.root_jsonb), batch, row, out, true);
    }

    /// The object of `row` as a JSON value.
    pub fn to_value(&self, batch: &RecordBatch, row: usize) -> Map<String, Value> {
        let mut text = String::new();
        self.write_json(batch, row, &mut text);
        match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

fn bind_nodes(nodes: &[Node], schema: &SchemaRef) -> Vec<BoundNode> {
    let index = |name: &str| schema.index_of(name).ok();
    nodes
        .iter()
        .map(|node| match node {
            Node::Leaf { key, column, .. } => BoundNode::Leaf {
                key: key.clone(),
                column: index(column),
            },
            Node::Object {
                key,
                column,
                nullable,
                children,
            } => {
                let children = bind_nodes(children, schema);
                let jsonb = jsonb_indices(&children);
                BoundNode::Object {
                    key: key.clone(),
                    flag: index(column)
                        .filter(|i| schema.field(*i).data_type() == &DataType::Boolean),
                    nullable: *nullable,
                    children,
                    jsonb,
                }
            }
            Node::Bands { key, templates } => {
                let bands: Vec<Vec<(String, Option<usize>)>> = BANDS
                    .iter()
                    .map(|band| {
                        templates
                            .iter()
                            .map(|t| (t.replace("{}", band), index(&band_column(t, band))))
                            .collect()
                    })
                    .collect();
                let mut jsonb: Vec<(usize, usize)> = (0..bands.len())
                    .flat_map(|b| (0..templates.len()).map(move |t| (b, t)))
                    .collect();
                jsonb.sort_by(|x, y| jsonb_key_order(&bands[x.0][x.1].0, &bands[y.0][y.1].0));
                BoundNode::Bands {
                    key: key.clone(),
                    bands,
                    jsonb,
                }
            }
        })
        .collect()
}

fn jsonb_indices(nodes: &[BoundNode]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|a, b| jsonb_key_order(nodes[*a].key(), nodes[*b].key()));
    order
}

impl BoundNode {
    fn key(&self) -> &str {
        match self {
            BoundNode::Leaf { key, .. }
            | BoundNode::Object { key, .. }
            | BoundNode::Bands { key, .. } => key,
        }
    }
}

fn write_key(key: &str, out: &mut String) {
    // Keys come from the layout constants: plain ASCII, nothing to escape.
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

fn write_object(
    nodes: &[BoundNode],
    order: Option<&[usize]>,
    batch: &RecordBatch,
    row: usize,
    out: &mut String,
    jsonb: bool,
) {
    out.push('{');
    let count = nodes.len();
    for i in 0..count {
        let node = &nodes[order.map_or(i, |o| o[i])];
        if i > 0 {
            out.push(',');
        }
        write_key(node.key(), out);
        match node {
            BoundNode::Leaf { column, .. } => {
                write_cell(column.map(|c| batch.column(c)), row, out, jsonb);
            }
            BoundNode::Object {
                flag,
                nullable,
                children,
                jsonb: child_order,
                ..
            } => {
                let present = match (nullable, flag) {
                    (false, _) => true,
                    (true, Some(f)) => {
                        let flags = batch.column(*f).as_boolean();
                        flags.is_valid(row) && flags.value(row)
                    }
                    (true, None) => has_value(children, batch, row),
                };
                if present {
                    let order = jsonb.then_some(child_order.as_slice());
                    write_object(children, order, batch, row, out, jsonb);
                } else {
                    out.push_str("null");
                }
            }
            BoundNode::Bands {
                bands,
                jsonb: band_order,
                ..
            } => {
                let present: Vec<bool> = bands
                    .iter()
                    .map(|keys| {
                        keys.last()
                            .and_then(|(_, c)| *c)
                            .is_some_and(|c| is_number(batch.column(c), row))
                    })
                    .collect();
                out.push('{');
                let mut first = true;
                let mut emit = |b: usize, t: usize, out: &mut String| {
                    if !present[b] {
                        return;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let (key, column) = &bands[b][t];
                    write_key(key, out);
                    write_cell(column.map(|c| batch.column(c)), row, out, jsonb);
                };
                if jsonb {
                    for &(b, t) in band_order {
                        emit(b, t, out);
                    }
                } else {
                    for (b, keys) in bands.iter().enumerate() {
                        for t in 0..keys.len() {
                            emit(b, t, out);
                        }
                    }
                }
                out.push('}');
            }
        }
    }
    out.push('}');
}

fn has_value(nodes: &[BoundNode], batch: &RecordBatch, row: usize) -> bool {
    nodes.iter().any(|node| match node {
        BoundNode::Leaf { column, .. } => column.is_some_and(|c| is_value(batch.column(c), row)),
        BoundNode::Object { children, .. } => has_value(children, batch, row),
        BoundNode::Bands { bands, .. } => bands
            .iter()
            .flatten()
            .any(|(_, c)| c.is_some_and(|c| is_value(batch.column(c), row))),
    })
}

/// Whether a cell prints as something other than null.
fn is_value(array: &ArrayRef, row: usize) -> bool {
    if array.is_null(row) {
        return false;
    }
    match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).is_finite(),
        DataType::Int64
        | DataType::Int32
        | DataType::Utf8
        | DataType::Utf8View
        | DataType::Boolean => true,
        _ => false,
    }
}

fn is_number(array: &ArrayRef, row: usize) -> bool {
    matches!(
        array.data_type(),
        DataType::Float64 | DataType::Int64 | DataType::Int32
    ) && is_value(array, row)
}

/// Writes one cell: integers, finite decimals, text, booleans; else null.
/// Decimals print as serde_json does (`4.0`), or as JavaScript does (`4`)
/// for the jsonb form.
fn write_cell(array: Option<&ArrayRef>, row: usize, out: &mut String, jsonb: bool) {
    let Some(array) = array.filter(|a| is_value(a, row)) else {
        out.push_str("null");
        return;
    };
    match array.data_type() {
        DataType::Int64 => {
            let _ = write!(out, "{}", array.as_primitive::<Int64Type>().value(row));
        }
        DataType::Int32 => {
            let _ = write!(out, "{}", array.as_primitive::<Int32Type>().value(row));
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            if jsonb {
                write_js_number(v, out);
            } else {
                out.push_str(ryu::Buffer::new().format_finite(v));
            }
        }
        DataType::Utf8 => write_str(array.as_string::<i32>().value(row), out),
        DataType::Utf8View => write_str(array.as_string_view().value(row), out),
        DataType::Boolean => out.push_str(if array.as_boolean().value(row) {
            "true"
        } else {
            "false"
        }),
        _ => out.push_str("null"),
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push_str(&Value::from(s).to_string());
}

/// One cell as JSON: integers, finite decimals, text, booleans; else null.
pub fn cell(batch: &RecordBatch, column: &str, row: usize) -> Value {
    let Some(array) = batch.column_by_name(column) else {
        return Value::Null;
    };
    if !is_value(array, row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Float64 => {
            serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(row))
                .map_or(Value::Null, Value::Number)
        }
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        _ => Value::Null,
    }
}

/// Reads every metric of a JSON object along the layout: `(column, value)`
/// in layout order, with the flag of each nullable object. Stored analyses
/// come back from PostgreSQL with any key order and `4.0` printed as `4`:
/// only the path matters.
pub fn flatten(nodes: &[Node], object: &Value, out: &mut Vec<(String, Value)>) {
    for node in nodes {
        match node {
            Node::Leaf { key, column, .. } => {
                out.push((
                    column.clone(),
                    object.get(key).cloned().unwrap_or(Value::Null),
                ));
            }
            Node::Object {
                key,
                column,
                nullable,
                children,
            } => {
                let inner = object.get(key).unwrap_or(&Value::Null);
                if *nullable {
                    out.push((column.clone(), Value::Bool(inner.is_object())));
                }
                flatten(children, inner, out);
            }
            Node::Bands { key, templates } => {
                let inner = object.get(key).unwrap_or(&Value::Null);
                for band in BANDS {
                    for t in templates {
                        let k = t.replace("{}", band);
                        let v = inner.get(&k).cloned().unwrap_or(Value::Null);
                        out.push((band_column(t, band), v));
                    }
                }
            }
        }
    }
}

/// The first value of `object` that the layout cannot read as its kind (a
/// number, a text, an object), as `(JSON path, what it is instead)`. Null and
/// missing values are fine: they are metrics without a value.
pub fn first_mistyped(nodes: &[Node], object: &Value) -> Option<(String, &'static str)> {
    fn walk(nodes: &[Node], object: &Value, path: &str) -> Option<(String, &'static str)> {
        let at = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        for node in nodes {
            match node {
                Node::Leaf { key, text, .. } => match object.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(_)) if *text => {}
                    Some(Value::Number(_)) if !*text => {}
                    Some(other) => return Some((at(key), json_kind(other))),
                },
                Node::Object { key, children, .. } => match object.get(key) {
                    None | Some(Value::Null) => {}
                    Some(inner @ Value::Object(_)) => {
                        if let Some(found) = walk(children, inner, &at(key)) {
                            return Some(found);
                        }
                    }
                    Some(other) => return Some((at(key), json_kind(other))),
                },
                Node::Bands { key, .. } => match object.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(bands)) => {
                        for (band_key, value) in bands {
                            if !(value.is_null() || value.is_number()) {
                                return Some((format!("{}.{band_key}", at(key)), json_kind(value)));
                            }
                        }
                    }
                    Some(other) => return Some((at(key), json_kind(other))),
                },
            }
        }
        None
    }
    walk(nodes, object, "")
}

/// What a JSON value is, in words.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_value_of_the_wrong_kind_is_found_by_its_path() {
        let nodes = analysis();
        let ok = serde_json::json!({"overall": {"distance_km": 4, "date": {"date": "2025-02-03"}},
            "fapRegen": null, "fuelConsumption": {"bySpeedRange": {"35-45_l100km": 5.5}}, "extra": "ignored"});
        assert_eq!(first_mistyped(nodes, &ok), None);
        let cases = [
            (
                serde_json::json!({"overall": {"distance_km": "4"}}),
                "overall.distance_km",
                "a text",
            ),
            (
                serde_json::json!({"overall": {"date": {"date": 20250203}}}),
                "overall.date.date",
                "a number",
            ),
            (
                serde_json::json!({"fapRegen": true}),
                "fapRegen",
                "a boolean",
            ),
            (
                serde_json::json!({"fuelConsumption": {"bySpeedRange": {"35-45_l100km": [1]}}}),
                "fuelConsumption.bySpeedRange.35-45_l100km",
                "a list",
            ),
        ];
        for (object, path, kind) in cases {
            assert_eq!(
                first_mistyped(nodes, &object),
                Some((path.to_string(), kind))
            );
        }
    }

    #[test]
    fn layouts_parse_and_name_columns_by_snake_path() {
        let analysis = parse(ANALYSIS);
        let cols = leaf_columns(&analysis);
        assert!(cols.contains(&("engine_battery_before_drive_v".into(), false)));
        assert!(cols.contains(&("band_200_plus_km".into(), false)));
        assert!(cols.contains(&("band_35_45_l100km".into(), false)));
        assert!(cols.contains(&("overall_date_date".into(), true)));
        assert_eq!(
            flag_columns(&analysis),
            [
                "fap_regen",
                "fap_regen_speed",
                "fap_regen_fap_temp",
                "fap_regen_fap_pressure",
                "fap_regen_revs",
                "fap_regen_fap_soot",
                "overall_date"
            ]
        );
        let average = parse(AVERAGE);
        assert_eq!(flag_columns(&average), ["fap_regen"]);
        assert_eq!(leaf_columns(&average).len(), 66 + 21);
    }

    #[test]
    fn every_column_name_is_plain_and_unique() {
        for layout in [ANALYSIS, AVERAGE] {
            let nodes = parse(layout);
            let mut names: Vec<String> = leaf_columns(&nodes).into_iter().map(|c| c.0).collect();
            names.extend(flag_columns(&nodes));
            let unique: HashSet<&String> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "duplicate column names");
            for name in &names {
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{name}"
                );
            }
        }
    }
}
