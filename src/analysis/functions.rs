//! The few SQL functions DataFusion lacks, registered on every context (and
//! on Ballista executors, which must know them by name).
//!
//! Scalar:
//! - `round_even(x, d)`: numpy's `round` (×10^d, round half to even, ÷10^d);
//!   DataFusion's `round` rounds half away from zero.
//! - `round_decimal(x, d)`: Python's `round(float, d)`, correctly rounded on
//!   the exact binary value; only the injector average uses it (contract §3).
//!
//! Window, over a whole log (`OVER (PARTITION BY log_no …)`):
//! - `log_count(x)`: how many rows of the log have a non-null `x`;
//! - `log_median(x)`: the median of the log's non-null `x` (an even count
//!   averages the two middle values);
//! - `running_any(c)`, in the log's row order (`ORDER BY ts, line`): true
//!   from the first row where `c` is true on, that row included.
//!
//! DataFusion's own `COUNT(..) OVER (PARTITION BY ..)` or `median(..) OVER
//! (..)` run in `WindowAggExec`, which buffers its entire input before it
//! computes anything (apache/datafusion#22946): memory grows with the number
//! of logs. These two ignore the window frame and declare bounded
//! execution, so they run in `BoundedWindowAggExec`: it holds one log at a
//! time, and each function computes its value once the log's last row has
//! arrived. `running_any` needs no more than the row at hand and answers at
//! once, without the per-row frame search of a running `bool_or`.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::cast::as_int64_array;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    ColumnarValue, PartitionEvaluator, ScalarUDF, Signature, Volatility, WindowUDF, WindowUDFImpl,
    create_udf,
};
use datafusion::prelude::SessionContext;

/// numpy-style rounding: half to even on `x · 10^digits`.
pub fn round_even(x: f64, digits: i32) -> f64 {
    if digits == 0 {
        return x.round_ties_even();
    }
    let scale = 10f64.powi(digits);
    (x * scale).round_ties_even() / scale
}

/// Python-style `round(x, digits)`: the decimal nearest to the exact binary
/// value of `x`, ties to even. (1.02+0.89+0.99+1.08)/4 = 0.995000…01 → 1.0.
pub fn round_decimal(x: f64, digits: i32) -> f64 {
    if !x.is_finite() || !(0..=17).contains(&digits) {
        return round_even(x, digits);
    }
    format!("{:.*}", digits as usize, x).parse().unwrap_or(x)
}

/// Registers the project's functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in scalar_functions() {
        ctx.register_udf(f);
    }
    for f in window_functions() {
        ctx.register_udwf(f);
    }
}

/// The scalar functions, for contexts built by hand (Ballista executors).
pub fn scalar_functions() -> Vec<ScalarUDF> {
    vec![
        rounding_udf("round_even", round_even),
        rounding_udf("round_decimal", round_decimal),
    ]
}

/// The window functions.
pub fn window_functions() -> Vec<WindowUDF> {
    let mut functions: Vec<WindowUDF> = [WholeLog::Count, WholeLog::Median]
        .into_iter()
        .map(|kind| WindowUDF::new_from_impl(WholeLogFn::new(kind)))
        .collect();
    functions.push(WindowUDF::new_from_impl(RunningAny::default()));
    functions
}

fn rounding_udf(name: &str, round: fn(f64, i32) -> f64) -> ScalarUDF {
    let f = move |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let (x, d) = (&arrays[0], &arrays[1]);
        let x = x.as_primitive::<Float64Type>();
        let d = as_int64_array(d.as_ref())?;
        let out: Float64Array = x
            .iter()
            .zip(d.iter())
            .map(|(x, d)| match (x, d) {
                (Some(x), Some(d)) => {
                    let r = round(x, i32::try_from(d).unwrap_or(0));
                    r.is_finite().then_some(r)
                }
                _ => None,
            })
            .collect();
        let scalar_inputs = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let out: ArrayRef = Arc::new(out);
        Ok(if scalar_inputs && out.len() == 1 {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    };
    create_udf(
        name,
        vec![DataType::Float64, DataType::Int64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(f),
    )
}

/// Which whole-log value a window function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WholeLog {
    Count,
    Median,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WholeLogFn {
    kind: WholeLog,
    signature: Signature,
}

impl WholeLogFn {
    fn new(kind: WholeLog) -> Self {
        let signature = match kind {
            WholeLog::Median => Signature::exact(vec![DataType::Float64], Volatility::Immutable),
            WholeLog::Count => Signature::any(1, Volatility::Immutable),
        };
        Self { kind, signature }
    }
}

impl WindowUDFImpl for WholeLogFn {
    fn name(&self) -> &str {
        match self.kind {
            WholeLog::Count => "log_count",
            WholeLog::Median => "log_median",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(WholeLogEvaluator {
            kind: self.kind,
            value: None,
        }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let data_type = match self.kind {
            WholeLog::Count => DataType::Int64,
            WholeLog::Median => DataType::Float64,
        };
        Ok(Arc::new(Field::new(args.name(), data_type, true)))
    }
}

/// Computes the log's value on the first row asked for (the whole log is
/// there by then), then answers every other row of the log from it.
#[derive(Debug)]
struct WholeLogEvaluator {
    kind: WholeLog,
    value: Option<ScalarValue>,
}

impl PartitionEvaluator for WholeLogEvaluator {
    fn supports_bounded_execution(&self) -> bool {
        true
    }

    /// Every row needs the whole log; `BoundedWindowAggExec` then waits for
    /// the log's end before asking.
    fn get_range(&self, _idx: usize, n_rows: usize) -> Result<Range<usize>> {
        Ok(0..n_rows)
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        if let Some(value) = &self.value {
            return Ok(value.clone());
        }
        let Some(input) = values.first() else {
            return exec_err!("whole-log functions take one argument");
        };
        let input = input.slice(range.start, range.end - range.start);
        let value = match self.kind {
            WholeLog::Count => ScalarValue::Int64(Some((input.len() - input.null_count()) as i64)),
            WholeLog::Median => ScalarValue::Float64(median(input.as_primitive::<Float64Type>())),
        };
        self.value = Some(value.clone());
        Ok(value)
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let value = self.evaluate(values, &(0..num_rows))?;
        value.to_array_of_size(num_rows)
    }
}

/// `running_any(c)`: whether `c` was true at this row or any earlier one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RunningAny {
    signature: Signature,
}

impl Default for RunningAny {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for RunningAny {
    fn name(&self) -> &str {
        "running_any"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(RunningAnyEvaluator { seen: false }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(args.name(), DataType::Boolean, false)))
    }
}

/// Rows are evaluated in order, once each: the flag only ever turns on.
#[derive(Debug)]
struct RunningAnyEvaluator {
    seen: bool,
}

impl PartitionEvaluator for RunningAnyEvaluator {
    fn supports_bounded_execution(&self) -> bool {
        true
    }

    /// The row alone decides: answer as soon as it arrives.
    fn is_causal(&self) -> bool {
        true
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let Some(input) = values.first() else {
            return exec_err!("running_any takes one argument");
        };
        let flags = input.as_boolean();
        let row = range.start;
        if row < flags.len() && flags.is_valid(row) && flags.value(row) {
            self.seen = true;
        }
        Ok(ScalarValue::Boolean(Some(self.seen)))
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let mut out = Vec::with_capacity(num_rows);
        for row in 0..num_rows {
            let value = self.evaluate(values, &(row..row + 1))?;
            out.push(matches!(value, ScalarValue::Boolean(Some(true))));
        }
        Ok(Arc::new(datafusion::arrow::array::BooleanArray::from(out)))
    }
}

/// The median of the non-null values (the mean of the two middle ones for
/// an even count), as numpy's `median` over pandas' `dropna`.
fn median(values: &Float64Array) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if v.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_to_even_like_numpy() {
        assert_eq!(round_even(0.5, 0), 0.0);
        assert_eq!(round_even(1.5, 0), 2.0);
        assert_eq!(round_even(2.5, 0), 2.0);
        assert_eq!(round_even(-0.5, 0), -0.0);
        assert_eq!(round_even(-2.5, 0), -2.0);
        // 2.675 is 2.67499999… in binary, but ×100 gives exactly 267.5 → 268.
        assert_eq!(round_even(2.675, 2), 2.68);
        assert_eq!(round_even(33.05, 1), 33.0);
        assert_eq!(round_even(1482.25, 1), 1482.2);
    }

    #[test]
    fn injector_exception_is_correctly_rounded() {
        let avg = (1.02 + 0.89 + 0.99 + 1.08) / 4.0;
        assert_eq!(avg, 0.9950000000000001);
        assert_eq!(round_decimal(avg, 2), 1.0);
        assert_eq!(round_even(avg, 2), 1.0);
        // The two differ where the exact binary value is below the tie.
        assert_eq!(round_decimal(2.675, 2), 2.67);
        assert_eq!(round_even(2.675, 2), 2.68);
        assert_eq!(round_decimal(0.125, 2), 0.12);
    }

    #[test]
    fn median_ignores_nulls_and_averages_the_middle_pair() {
        let m = |v: Vec<Option<f64>>| median(&Float64Array::from(v));
        assert_eq!(m(vec![Some(0.0), Some(1.0), Some(0.9)]), Some(0.9));
        assert_eq!(
            m(vec![Some(0.0), None, Some(1.0), Some(0.9), Some(421.0)]),
            Some(0.95)
        );
        assert_eq!(m(vec![None, None]), None);
        assert_eq!(m(vec![]), None);
        assert_eq!(m(vec![Some(2.0)]), Some(2.0));
    }
}
