-- Staging: every log's rows after the contract's cleaning (analysis.md §2).
--
-- In:  log_rows  one row per data line, in time order within each log;
--                ts is NULL where Date + Time is not a strict timestamp (§2.2,
--                parsed while reading); a log that cannot be read at all has a
--                single row whose `problem` says why
-- Out: the rows that survive cleaning, with `dt` (seconds since the previous
--      row) and per-log counts. A log where no row survives keeps its first
--      row with kept = false, so the per-log layer can still say why it failed.
--
-- Whole-log values use the project's window functions log_count, log_median
-- (see src/analysis/functions.rs): they give each row the value over its whole
-- log, whatever the frame, and stream one log at a time.
WITH readings AS (
    SELECT
        log_no,
        line,
        ts,
        problem,
        has_speed_column,
        has_oil_temp_column,
        "Revs"              AS revs,
        "Speed"             AS speed,
        "ExternalTemp"      AS external_temp,
        "InjFlow"           AS inj_flow,
        "AccelPedalPos"     AS accel_pedal,
        "Battery"           AS battery,
        "Coolant"           AS coolant,
        "Errors"            AS errors,
        "FuelPress"         AS fuel_press,
        "FuelPressInstr"    AS fuel_press_instr,
        "Inj.1FlowCorr"     AS inj1_corr,
        "Inj.2FlowCorr"     AS inj2_corr,
        "Inj.3FlowCorr"     AS inj3_corr,
        "Inj.4FlowCorr"     AS inj4_corr,
        "OilCarbon"         AS oil_carbon,
        "OilDilution"       AS oil_dilution,
        "OilTemp"           AS oil_temp,
        "REGEN"             AS regen,
        "TurboInstr"        AS turbo_instr,
        "Turbopress"        AS turbo_press,
        "Avg10regen"        AS avg10_regen,
        "FAP life"          AS fap_life,
        "FAPAdditiveRemain" AS fap_additive_remain,
        "FAPAdditiveVol"    AS fap_additive_vol,
        "FAPcinder"         AS fap_cinder,
        "FAPdeposits"       AS fap_deposits,
        "FAPlifeLeft"       AS fap_life_left,
        "FAPpressure"       AS fap_pressure,
        "FAPsoot"           AS fap_soot,
        "FAPtemp"           AS fap_temp,
        "LastRegen"         AS last_regen
    FROM log_rows
    -- 1. Sensor sentinels go before anything is timed, so they shorten nothing.
    WHERE ("FAPpressure" IS DISTINCT FROM 65280)
      AND ("FAPtemp" IS DISTINCT FROM 25855)
),
timed AS (
    SELECT
        *,
        ROW_NUMBER() OVER by_time AS row_in_log,
        -- 4. Time steps in integer nanoseconds, so dt is exact (0.9, 1.9, 421.0)
        --    and sums of durations do not drift; 0 for the first row.
        CASE WHEN ts IS NOT NULL
             THEN COALESCE(CAST(ts AS BIGINT) - CAST(LAG(ts) OVER by_time AS BIGINT), 0)
        END AS dt_ns
    FROM readings
    -- 3. Rows in time order; rows without a timestamp sort last and are dropped (2).
    WINDOW by_time AS (PARTITION BY log_no ORDER BY ts, line)
),
typical AS (
    SELECT
        *,
        dt_ns / 1e9 AS dt,
        log_count(line) OVER per_log AS data_rows,
        log_count(ts) OVER per_log   AS timed_rows,
        -- 5. The typical step: median dt, the first row's 0 included.
        log_median(dt_ns / 1e9) OVER per_log AS typical_dt
    FROM timed
    WINDOW per_log AS (PARTITION BY log_no)
)
SELECT
    *,
    -- 6. Drop the first row after a logger pause; dt is not recomputed.
    COALESCE(dt < 3 * typical_dt, false) AS kept
FROM typical
WHERE COALESCE(dt < 3 * typical_dt, false) OR row_in_log = 1
