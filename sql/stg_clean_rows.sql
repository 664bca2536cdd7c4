-- Staging: every log's rows after the contract's cleaning (analysis.md §2).
--
-- In:  log_rows  one row per data line; ts is NULL where Date + Time is not a
--                strict `Y.M.D H:M:S.f` timestamp (§2.2, parsed while reading)
-- Out: the rows that survive cleaning, with `dt` (seconds since the previous
--      row) and per-log counts. A log where no row survives keeps one row with
--      kept = false, so the per-log layer can still say why it failed.
WITH readings AS (
    SELECT
        log_id,
        line,
        ts,
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
        COUNT(*) OVER per_log  AS data_rows,
        COUNT(ts) OVER per_log AS timed_rows,
        ROW_NUMBER() OVER by_time AS row_in_log,
        -- 4. Time steps in integer nanoseconds, so dt is exact (0.9, 1.9, 421.0)
        --    and sums of durations do not drift; 0 for the first row.
        CASE WHEN ts IS NOT NULL
             THEN COALESCE(CAST(ts AS BIGINT) - CAST(LAG(ts) OVER by_time AS BIGINT), 0)
        END AS dt_ns
    FROM readings
    -- 3. Rows in time order; rows without a timestamp sort last and are dropped (2).
    WINDOW per_log AS (PARTITION BY log_id),
           by_time AS (PARTITION BY log_id ORDER BY ts, line)
),
typical AS (
    -- 5. The typical step: median dt, the first row's 0 included.
    SELECT *, dt_ns / 1e9 AS dt, median(dt_ns / 1e9) OVER (PARTITION BY log_id) AS typical_dt
    FROM timed
)
SELECT
    *,
    -- 6. Drop the first row after a logger pause; dt is not recomputed.
    COALESCE(dt < 3 * typical_dt, false) AS kept
FROM typical
WHERE COALESCE(dt < 3 * typical_dt, false) OR row_in_log = 1
