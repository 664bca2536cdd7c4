//! The few SQL functions DataFusion lacks, registered on every context.
//!
//! - `round_even(x, d)`: numpy's `round` (×10^d, round half to even, ÷10^d);
//!   DataFusion's `round` rounds half away from zero.
//! - `round_decimal(x, d)`: Python's `round(float, d)`, correctly rounded on
//!   the exact binary value; only the injector average uses it (contract §3).
//!
//! Kept to two so a distributed engine has little to register on executors.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::cast::as_int64_array;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
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

/// Registers the project's UDFs on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(udf("round_even", round_even));
    ctx.register_udf(udf("round_decimal", round_decimal));
}

fn udf(name: &str, round: fn(f64, i32) -> f64) -> ScalarUDF {
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
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
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
}
