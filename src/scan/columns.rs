//! The log columns the contract reads, by the names the logger writes.
//!
//! Logs differ by engine profile: columns may be missing, extra or reordered, so
//! every log is mapped by header name onto this fixed list.

/// Numeric columns, in the order the `log_rows` table exposes them.
pub const NUMERIC: &[&str] = &[
    "Revs",
    "Speed",
    "ExternalTemp",
    "InjFlow",
    "AccelPedalPos",
    "Battery",
    "Coolant",
    "Errors",
    "FuelPress",
    "FuelPressInstr",
    "Inj.1FlowCorr",
    "Inj.2FlowCorr",
    "Inj.3FlowCorr",
    "Inj.4FlowCorr",
    "OilCarbon",
    "OilDilution",
    "OilTemp",
    "REGEN",
    "TurboInstr",
    "Turbopress",
    "Avg10regen",
    "FAP life",
    "FAPAdditiveRemain",
    "FAPAdditiveVol",
    "FAPcinder",
    "FAPdeposits",
    "FAPlifeLeft",
    "FAPpressure",
    "FAPsoot",
    "FAPtemp",
    "LastRegen",
];

/// The two text columns that make the timestamp.
pub const DATE: &str = "Date";
pub const TIME: &str = "Time";
