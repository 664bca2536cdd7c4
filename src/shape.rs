//! Between flat metric columns and the contract's nested JSON objects.
//!
//! The SQL returns one column per metric, named by its JSON path joined with
//! `_` (`engine_battery_beforeDrive_v`). A layout, written below in the shape
//! of the JSON itself, says how those columns nest, in which key order, and
//! which objects vanish. Numbers print by Arrow type: BIGINT as an integer,
//! DOUBLE as a decimal; a non-finite value is printed as null, never NaN.
//!
//! Layout syntax: `key` a leaf (`key:text` a text leaf), `key { … }` an
//! object, `key ?{ … }` an object that is null as a whole (when a boolean
//! column named like the object is false, or else when every leaf is null),
//! `key [ {}_a _{}_b ]` the speed bands: for each band label the keys with `{}`
//! replaced, present only when the band's last key has a value.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde_json::{Map, Value};

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
    /// An object; `nullable` objects can be null as a whole.
    Object {
        key: String,
        column: String,
        nullable: bool,
        children: Vec<Node>,
    },
    /// Speed bands: per label, the keys made from the templates.
    Bands {
        key: String,
        column: String,
        templates: Vec<String>,
    },
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
            key.clone()
        } else {
            format!("{prefix}_{key}")
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
                nodes.push(Node::Bands {
                    key,
                    column,
                    templates,
                });
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
            Node::Bands {
                column, templates, ..
            } => {
                for band in BANDS {
                    for t in templates {
                        out.push((format!("{column}_{}", t.replace("{}", band)), false));
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

/// Builds the JSON object of row `row` of `batch` following `nodes`.
pub fn to_json(nodes: &[Node], batch: &RecordBatch, row: usize) -> Map<String, Value> {
    let mut object = Map::new();
    for node in nodes {
        match node {
            Node::Leaf { key, column, .. } => {
                object.insert(key.clone(), cell(batch, column, row));
            }
            Node::Object {
                key,
                column,
                nullable,
                children,
            } => {
                let inner = to_json(children, batch, row);
                let present = match (nullable, flag(batch, column, row)) {
                    (false, _) => true,
                    (true, Some(flag)) => flag,
                    (true, None) => has_value(&inner),
                };
                let value = if present {
                    Value::Object(inner)
                } else {
                    Value::Null
                };
                object.insert(key.clone(), value);
            }
            Node::Bands {
                key,
                column,
                templates,
            } => {
                let mut bands = Map::new();
                for band in BANDS {
                    let keys: Vec<String> =
                        templates.iter().map(|t| t.replace("{}", band)).collect();
                    let values: Vec<Value> = keys
                        .iter()
                        .map(|k| cell(batch, &format!("{column}_{k}"), row))
                        .collect();
                    if values.last().is_some_and(|v| !v.is_null()) {
                        bands.extend(keys.into_iter().zip(values));
                    }
                }
                object.insert(key.clone(), Value::Object(bands));
            }
        }
    }
    object
}

fn has_value(object: &Map<String, Value>) -> bool {
    object.values().any(|v| match v {
        Value::Null => false,
        Value::Object(inner) => has_value(inner),
        _ => true,
    })
}

fn flag(batch: &RecordBatch, column: &str, row: usize) -> Option<bool> {
    let array = batch.column_by_name(column)?;
    let flags = array.as_boolean_opt()?;
    Some(flags.is_valid(row) && flags.value(row))
}

/// One cell as JSON: integers, finite decimals, text, booleans; else null.
pub fn cell(batch: &RecordBatch, column: &str, row: usize) -> Value {
    let Some(array) = batch.column_by_name(column) else {
        return Value::Null;
    };
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        _ => Value::Null,
    }
}

/// Reads a metric from a JSON object along the layout path of `column`.
/// Stored analyses come back from PostgreSQL with any key order and `4.0`
/// printed as `4`: only the path matters.
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
            Node::Bands {
                key,
                column,
                templates,
            } => {
                let inner = object.get(key).unwrap_or(&Value::Null);
                for band in BANDS {
                    for t in templates {
                        let k = t.replace("{}", band);
                        let v = inner.get(&k).cloned().unwrap_or(Value::Null);
                        out.push((format!("{column}_{k}"), v));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_parse_and_name_columns_by_path() {
        let analysis = parse(ANALYSIS);
        let cols = leaf_columns(&analysis);
        assert!(cols.contains(&("engine_battery_beforeDrive_v".into(), false)));
        assert!(cols.contains(&("fuelConsumption_bySpeedRange__200+_km".into(), false)));
        assert!(cols.contains(&("overall_date_date".into(), true)));
        assert_eq!(
            flag_columns(&analysis),
            [
                "fapRegen",
                "fapRegen_speed",
                "fapRegen_fapTemp",
                "fapRegen_fapPressure",
                "fapRegen_revs",
                "fapRegen_fapSoot",
                "overall_date"
            ]
        );
        let average = parse(AVERAGE);
        assert_eq!(flag_columns(&average), ["fapRegen"]);
        assert_eq!(leaf_columns(&average).len(), 66 + 21);
    }
}
