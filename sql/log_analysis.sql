-- Per log: the analysis object of every log, one row per log (analysis.md §4).
--
-- In:  stg_clean_rows  the surviving rows of every log
--      log_files       one row per log (log_no, log_id)
-- Out: one row per log: log_id, status, message, and one column per metric,
--      named by its JSON path in snake_case (engine.battery.beforeDrive_v is
--      engine_battery_before_drive_v; speed band 35-45 is band_35_45_l100km and
--      band_35_45_km). BIGINT columns print as integers, DOUBLE as decimals.
--
-- Notation of the contract: r(x) = TRY_CAST(round_even(x, 0) AS BIGINT),
-- r(x, d) = round_even(x, d) (numpy's half-to-even), trunc(x) toward zero.
WITH timeline AS (
    SELECT
        *,
        speed * dt / 3600 AS km,
        -- fuel in litres; only rows with InjFlow, Revs, Speed and dt all known count
        CASE WHEN speed IS NOT NULL
             THEN inj_flow * (revs / 60 * dt) * 2 / 1e6 / 0.8375
        END AS fuel_l,
        0 < revs AND revs < 1000 AND speed = 0 AS idle,
        regen = 1 AS in_regen,
        -- neighbours among the surviving rows (a pause inside a regeneration does not split it)
        LAG(ts) OVER by_time    AS prev_ts,
        LAG(regen) OVER by_time AS prev_regen,
        -- running flags, in row order (running_any: see src/analysis/functions.rs)
        coolant IS NOT NULL AND oil_temp IS NOT NULL AND (coolant < 40 OR oil_temp < 40) AS cold,
        running_any(COALESCE(revs > 0, false)) OVER by_time AS engine_ran,
        running_any(COALESCE(coolant IS NOT NULL AND oil_temp IS NOT NULL
                             AND (coolant < 40 OR oil_temp < 40), false)) OVER by_time AS warmup_started,
        -- speed bands [5,15) [15,25) ... [185,195) [195,200) [200,inf)
        CASE WHEN speed >= 200 THEN 20
             WHEN speed >= 195 THEN 19
             WHEN speed >= 5   THEN CAST(floor((speed - 5) / 10) AS INT)
        END AS band
    FROM stg_clean_rows
    WINDOW by_time AS (PARTITION BY log_no ORDER BY ts, line)
),
per_log AS (
    SELECT
        log_no,
        MAX(problem)    AS read_problem,
        bool_or(has_speed_column)    AS has_speed,
        bool_or(has_oil_temp_column) AS has_oil_temp,
        bool_or(kept)   AS usable,
        MAX(data_rows)  AS data_rows,
        MAX(timed_rows) AS timed_rows,
        -- overall
        SUM(km)     AS km,
        SUM(fuel_l) AS fuel_l,
        COUNT(*) FILTER (WHERE speed IS NOT NULL AND revs IS NOT NULL) AS speed_revs_rows,
        -- durations summed in integer nanoseconds: exact, then truncated
        SUM(dt_ns) / 1e9                                       AS dur_all,
        SUM(dt_ns) FILTER (WHERE revs = 0) / 1e9               AS dur_off,
        SUM(dt_ns) FILTER (WHERE revs > 0) / 1e9               AS dur_on,
        SUM(dt_ns) FILTER (WHERE speed = 0 AND revs > 0) / 1e9 AS dur_idle,
        SUM(dt_ns) FILTER (WHERE speed > 0) / 1e9              AS dur_driving,
        AVG(external_temp) AS ext_avg, MAX(external_temp) AS ext_max, MIN(external_temp) AS ext_min,
        MIN(ts) AS first_ts,
        MAX(ts) AS last_ts,
        -- driving
        MAX(accel_pedal) FILTER (WHERE accel_pedal BETWEEN 0 AND 100)          AS accel_max,
        AVG(accel_pedal) FILTER (WHERE accel_pedal > 0 AND accel_pedal <= 100) AS accel_avg,
        MIN(revs) AS revs_min, MAX(revs) AS revs_max, AVG(revs) AS revs_avg,
        AVG(revs) FILTER (WHERE speed > 0) AS revs_avg_driving,
        AVG(speed) AS speed_avg, MAX(speed) AS speed_max, MIN(speed) AS speed_min,
        -- engine
        -- before the engine first runs (or all engine-off rows when it never does)
        AVG(battery) FILTER (WHERE revs = 0 AND NOT engine_ran) AS battery_before,
        AVG(battery) FILTER (WHERE revs > 0) AS battery_running,
        MIN(coolant) AS coolant_min, MAX(coolant) AS coolant_max, AVG(coolant) AS coolant_avg,
        -- warm-up: from the first cold row to the first warm one at or after it
        (CAST(MIN(ts) FILTER (WHERE warmup_started AND coolant >= 80 AND oil_temp IS NOT NULL) AS BIGINT)
            - CAST(MIN(ts) FILTER (WHERE cold) AS BIGINT)) / 1e9 AS coolant_warmup_sec,
        (CAST(MIN(ts) FILTER (WHERE warmup_started AND oil_temp >= 80 AND coolant IS NOT NULL) AS BIGINT)
            - CAST(MIN(ts) FILTER (WHERE cold) AS BIGINT)) / 1e9 AS oil_warmup_sec,
        median(errors)       AS errors_median,
        median(oil_carbon)   AS oil_carbon_median,
        median(oil_dilution) AS oil_dilution_median,
        MIN(oil_temp) AS oil_min, MAX(oil_temp) AS oil_max, AVG(oil_temp) AS oil_avg,
        -- injectors at warm idle: warm = OilTemp >= 80, or Coolant >= 80 without an OilTemp column
        AVG(inj1_corr) FILTER (WHERE idle AND oil_temp >= 80) AS inj1_oil_warm,
        AVG(inj2_corr) FILTER (WHERE idle AND oil_temp >= 80) AS inj2_oil_warm,
        AVG(inj3_corr) FILTER (WHERE idle AND oil_temp >= 80) AS inj3_oil_warm,
        AVG(inj4_corr) FILTER (WHERE idle AND oil_temp >= 80) AS inj4_oil_warm,
        AVG(inj1_corr) FILTER (WHERE idle AND coolant >= 80)  AS inj1_coolant_warm,
        AVG(inj2_corr) FILTER (WHERE idle AND coolant >= 80)  AS inj2_coolant_warm,
        AVG(inj3_corr) FILTER (WHERE idle AND coolant >= 80)  AS inj3_coolant_warm,
        AVG(inj4_corr) FILTER (WHERE idle AND coolant >= 80)  AS inj4_coolant_warm,
        AVG(fuel_press - fuel_press_instr) FILTER (WHERE revs < 1000 AND speed = 0) AS fuel_press_diff_idle,
        AVG(turbo_press - turbo_instr)
            FILTER (WHERE (turbo_instr > 1200 OR turbo_press > 1200) AND regen = 0) AS boost_diff,
        -- fap
        MAX(fap_additive_vol)    AS additive_vol,
        AVG(fap_additive_remain) AS additive_remain,
        AVG(fap_cinder)          AS cinder_avg,
        AVG(fap_deposits)        AS deposits_avg,
        last_value(last_regen ORDER BY ts, line)  FILTER (WHERE last_regen IS NOT NULL)  AS last_regen,
        last_value(avg10_regen ORDER BY ts, line) FILTER (WHERE avg10_regen IS NOT NULL) AS last10_regen,
        median(fap_life)      AS life_median,
        median(fap_life_left) AS life_left_median,
        AVG(fap_pressure) FILTER (WHERE idle) AS pressure_idle_avg,
        MAX(fap_pressure) FILTER (WHERE idle) AS pressure_idle_max,
        MIN(fap_pressure) FILTER (WHERE idle) AS pressure_idle_min,
        MIN(fap_pressure) AS pressure_min, MAX(fap_pressure) AS pressure_max, AVG(fap_pressure) AS pressure_avg,
        first_value(fap_soot ORDER BY ts, line) FILTER (WHERE fap_soot IS NOT NULL) AS soot_first,
        last_value(fap_soot ORDER BY ts, line)  FILTER (WHERE fap_soot IS NOT NULL) AS soot_last,
        MIN(fap_temp) AS fap_temp_min, MAX(fap_temp) AS fap_temp_max, AVG(fap_temp) AS fap_temp_avg,
        -- regeneration
        COALESCE(bool_or(in_regen), false) AS has_regen,
        last_value(last_regen ORDER BY ts, line) FILTER (WHERE in_regen) AS regen_previous,
        SUM(CAST(ts AS BIGINT) - CAST(prev_ts AS BIGINT)) FILTER (WHERE in_regen AND prev_regen = 1) / 1e9 AS regen_seconds,
        SUM(km) FILTER (WHERE in_regen) AS regen_km,
        MIN(speed) FILTER (WHERE in_regen) AS regen_speed_min,
        MAX(speed) FILTER (WHERE in_regen) AS regen_speed_max,
        AVG(speed) FILTER (WHERE in_regen) AS regen_speed_avg,
        MIN(fap_temp) FILTER (WHERE in_regen) AS regen_temp_min,
        MAX(fap_temp) FILTER (WHERE in_regen) AS regen_temp_max,
        AVG(fap_temp) FILTER (WHERE in_regen) AS regen_temp_avg,
        MIN(fap_pressure) FILTER (WHERE in_regen) AS regen_pressure_min,
        MAX(fap_pressure) FILTER (WHERE in_regen) AS regen_pressure_max,
        AVG(fap_pressure) FILTER (WHERE in_regen) AS regen_pressure_avg,
        MIN(revs) FILTER (WHERE in_regen) AS regen_revs_min,
        MAX(revs) FILTER (WHERE in_regen) AS regen_revs_max,
        AVG(revs) FILTER (WHERE in_regen) AS regen_revs_avg,
        first_value(fap_soot ORDER BY ts, line) FILTER (WHERE in_regen AND fap_soot IS NOT NULL) AS regen_soot_first,
        last_value(fap_soot ORDER BY ts, line)  FILTER (WHERE in_regen AND fap_soot IS NOT NULL) AS regen_soot_last,
        SUM(fuel_l) FILTER (WHERE in_regen)  AS regen_fuel,
        SUM(km)     FILTER (WHERE regen = 0) AS non_regen_km,
        SUM(fuel_l) FILTER (WHERE regen = 0) AS non_regen_fuel,
        -- speed bands
        SUM(km)     FILTER (WHERE band =  0) AS band0_km,
        SUM(fuel_l) FILTER (WHERE band =  0) AS band0_fuel,
        SUM(km)     FILTER (WHERE band =  1) AS band1_km,
        SUM(fuel_l) FILTER (WHERE band =  1) AS band1_fuel,
        SUM(km)     FILTER (WHERE band =  2) AS band2_km,
        SUM(fuel_l) FILTER (WHERE band =  2) AS band2_fuel,
        SUM(km)     FILTER (WHERE band =  3) AS band3_km,
        SUM(fuel_l) FILTER (WHERE band =  3) AS band3_fuel,
        SUM(km)     FILTER (WHERE band =  4) AS band4_km,
        SUM(fuel_l) FILTER (WHERE band =  4) AS band4_fuel,
        SUM(km)     FILTER (WHERE band =  5) AS band5_km,
        SUM(fuel_l) FILTER (WHERE band =  5) AS band5_fuel,
        SUM(km)     FILTER (WHERE band =  6) AS band6_km,
        SUM(fuel_l) FILTER (WHERE band =  6) AS band6_fuel,
        SUM(km)     FILTER (WHERE band =  7) AS band7_km,
        SUM(fuel_l) FILTER (WHERE band =  7) AS band7_fuel,
        SUM(km)     FILTER (WHERE band =  8) AS band8_km,
        SUM(fuel_l) FILTER (WHERE band =  8) AS band8_fuel,
        SUM(km)     FILTER (WHERE band =  9) AS band9_km,
        SUM(fuel_l) FILTER (WHERE band =  9) AS band9_fuel,
        SUM(km)     FILTER (WHERE band = 10) AS band10_km,
        SUM(fuel_l) FILTER (WHERE band = 10) AS band10_fuel,
        SUM(km)     FILTER (WHERE band = 11) AS band11_km,
        SUM(fuel_l) FILTER (WHERE band = 11) AS band11_fuel,
        SUM(km)     FILTER (WHERE band = 12) AS band12_km,
        SUM(fuel_l) FILTER (WHERE band = 12) AS band12_fuel,
        SUM(km)     FILTER (WHERE band = 13) AS band13_km,
        SUM(fuel_l) FILTER (WHERE band = 13) AS band13_fuel,
        SUM(km)     FILTER (WHERE band = 14) AS band14_km,
        SUM(fuel_l) FILTER (WHERE band = 14) AS band14_fuel,
        SUM(km)     FILTER (WHERE band = 15) AS band15_km,
        SUM(fuel_l) FILTER (WHERE band = 15) AS band15_fuel,
        SUM(km)     FILTER (WHERE band = 16) AS band16_km,
        SUM(fuel_l) FILTER (WHERE band = 16) AS band16_fuel,
        SUM(km)     FILTER (WHERE band = 17) AS band17_km,
        SUM(fuel_l) FILTER (WHERE band = 17) AS band17_fuel,
        SUM(km)     FILTER (WHERE band = 18) AS band18_km,
        SUM(fuel_l) FILTER (WHERE band = 18) AS band18_fuel,
        SUM(km)     FILTER (WHERE band = 19) AS band19_km,
        SUM(fuel_l) FILTER (WHERE band = 19) AS band19_fuel,
        SUM(km)     FILTER (WHERE band = 20) AS band20_km,
        SUM(fuel_l) FILTER (WHERE band = 20) AS band20_fuel,
        COUNT(*) AS rows_kept
    FROM timeline
    GROUP BY log_no
),
judged AS (
    SELECT
        f.log_id, p.*,
        CASE
            WHEN p.log_no IS NULL THEN 'The log has no data rows (or only rows with sensor error values).'
            WHEN p.read_problem IS NOT NULL THEN p.read_problem
            WHEN p.timed_rows = 0 THEN 'None of the ' || p.data_rows
                 || ' rows of the log has a valid date and time (expected like 2025.02.03 20:34:42.9).'
            WHEN p.timed_rows = 1 THEN 'The log has only one row with a valid date and time; at least two are needed.'
            WHEN NOT p.usable THEN 'Most of the log''s rows repeat the date and time of the row before, so the time between rows cannot be measured.'
        END AS problem
    FROM log_files f
    LEFT JOIN per_log p ON p.log_no = f.log_no
)
SELECT
    log_id,
    CASE WHEN problem IS NULL THEN 'Success' ELSE 'Failed' END AS status,
    COALESCE(problem, 'Analysis completed successfully.') AS message,
    -- driving
    TRY_CAST(round_even(accel_max, 0) AS BIGINT)        AS driving_acceleration_max_perc,
    TRY_CAST(round_even(accel_avg, 0) AS BIGINT)        AS driving_acceleration_avg_perc,
    TRY_CAST(round_even(revs_min, 0) AS BIGINT)         AS driving_revs_min,
    TRY_CAST(round_even(revs_max, 0) AS BIGINT)         AS driving_revs_max,
    TRY_CAST(round_even(revs_avg, 0) AS BIGINT)         AS driving_revs_avg,
    TRY_CAST(round_even(revs_avg_driving, 0) AS BIGINT) AS driving_revs_avg_driving,
    TRY_CAST(round_even(speed_avg, 0) AS BIGINT)        AS driving_speed_avg_kmh,
    TRY_CAST(round_even(speed_max, 0) AS BIGINT)        AS driving_speed_max_kmh,
    TRY_CAST(round_even(speed_min, 0) AS BIGINT)        AS driving_speed_min_kmh,
    -- engine
    round_even(battery_before, 2)                   AS engine_battery_before_drive_v,
    round_even(battery_running, 2)                  AS engine_battery_engine_running_v,
    TRY_CAST(round_even(coolant_min, 0) AS BIGINT)      AS engine_coolant_temp_min_c,
    TRY_CAST(round_even(coolant_max, 0) AS BIGINT)      AS engine_coolant_temp_max_c,
    TRY_CAST(round_even(coolant_avg, 0) AS BIGINT)      AS engine_coolant_temp_avg_c,
    CASE WHEN coolant_warmup_sec < 3600 THEN coolant_warmup_sec END AS engine_engine_warmup_coolant_sec,
    CASE WHEN oil_warmup_sec < 3600 THEN oil_warmup_sec END         AS engine_engine_warmup_oil_sec,
    TRY_CAST(trunc(errors_median) AS BIGINT)                AS engine_errors,
    TRY_CAST(round_even(oil_carbon_median, 0) AS BIGINT)    AS engine_oil_carbonate_perc,
    TRY_CAST(round_even(oil_dilution_median, 0) AS BIGINT)  AS engine_oil_dilution_perc,
    TRY_CAST(round_even(oil_min, 0) AS BIGINT)              AS engine_oil_temp_min_c,
    TRY_CAST(round_even(oil_max, 0) AS BIGINT)              AS engine_oil_temp_max_c,
    TRY_CAST(round_even(oil_avg, 0) AS BIGINT)              AS engine_oil_temp_avg_c,
    injector1 AS engine_injector_injector1,
    injector2 AS engine_injector_injector2,
    injector3 AS engine_injector_injector3,
    injector4 AS engine_injector_injector4,
    -- the one place with Python's decimal rounding (analysis.md §3)
    round_decimal((injector1 + injector2 + injector3 + injector4) / 4, 2) AS engine_injector_average,
    round_even(fuel_press_diff_idle, 2)                 AS engine_fuel_pressure_avg_diff_idle_mbar,
    round_even(boost_diff, 2)                           AS engine_boost_avg_diff_mbar,
    -- fap
    round_even(additive_vol, 2)                         AS fap_additive_vol_ml,
    round_even(additive_remain, 2)                      AS fap_additive_remain_ml,
    round_even(cinder_avg, 2)                           AS fap_deposits_percentage_perc,
    round_even(deposits_avg, 2)                         AS fap_deposits_weight_gram,
    TRY_CAST(trunc(last_regen) AS BIGINT)                   AS fap_last_regen_km,
    TRY_CAST(trunc(last10_regen) AS BIGINT)                 AS fap_last10_regen_km,
    TRY_CAST(trunc(life_median) AS BIGINT)                  AS fap_life_life_km,
    TRY_CAST(trunc(life_left_median) AS BIGINT)             AS fap_life_left_km,
    round_even(pressure_idle_avg, 1)                    AS fap_pressure_idle_avg_mbar,
    round_even(pressure_idle_max, 1)                    AS fap_pressure_idle_max_mbar,
    round_even(pressure_idle_min, 1)                    AS fap_pressure_idle_min_mbar,
    round_even(pressure_min, 1)                         AS fap_pressure_min_mbar,
    round_even(pressure_max, 1)                         AS fap_pressure_max_mbar,
    round_even(pressure_avg, 1)                         AS fap_pressure_avg_mbar,
    round_even(soot_first, 2)                           AS fap_soot_start_gl,
    round_even(soot_last, 2)                            AS fap_soot_end_gl,
    round_even(soot_last - soot_first, 2)               AS fap_soot_diff_gl,
    TRY_CAST(round_even(fap_temp_min, 0) AS BIGINT)         AS fap_temp_min_c,
    TRY_CAST(round_even(fap_temp_max, 0) AS BIGINT)         AS fap_temp_max_c,
    TRY_CAST(round_even(fap_temp_avg, 0) AS BIGINT)         AS fap_temp_avg_c,
    -- fapRegen: the whole object exists only when some row has REGEN = 1
    has_regen                                           AS fap_regen,
    TRY_CAST(trunc(regen_previous) AS BIGINT)               AS fap_regen_previous_regen_km,
    CASE WHEN regen_seconds > 0 THEN TRY_CAST(trunc(regen_seconds) AS BIGINT) END AS fap_regen_duration_sec,
    CASE WHEN has_speed THEN round_even(COALESCE(regen_km, 0), 1) END         AS fap_regen_distance_km,
    TRY_CAST(round_even(regen_speed_min, 0) AS BIGINT)      AS fap_regen_speed_min_kmh,
    TRY_CAST(round_even(regen_speed_max, 0) AS BIGINT)      AS fap_regen_speed_max_kmh,
    TRY_CAST(round_even(regen_speed_avg, 0) AS BIGINT)      AS fap_regen_speed_avg_kmh,
    TRY_CAST(round_even(regen_temp_min, 0) AS BIGINT)       AS fap_regen_fap_temp_min_c,
    TRY_CAST(round_even(regen_temp_max, 0) AS BIGINT)       AS fap_regen_fap_temp_max_c,
    TRY_CAST(round_even(regen_temp_avg, 0) AS BIGINT)       AS fap_regen_fap_temp_avg_c,
    TRY_CAST(round_even(regen_pressure_min, 0) AS BIGINT)   AS fap_regen_fap_pressure_min_mbar,
    TRY_CAST(round_even(regen_pressure_max, 0) AS BIGINT)   AS fap_regen_fap_pressure_max_mbar,
    TRY_CAST(round_even(regen_pressure_avg, 0) AS BIGINT)   AS fap_regen_fap_pressure_avg_mbar,
    TRY_CAST(round_even(regen_revs_min, 0) AS BIGINT)       AS fap_regen_revs_min,
    TRY_CAST(round_even(regen_revs_max, 0) AS BIGINT)       AS fap_regen_revs_max,
    TRY_CAST(round_even(regen_revs_avg, 0) AS BIGINT)       AS fap_regen_revs_avg,
    round_even(regen_soot_first, 2)                     AS fap_regen_fap_soot_start_gl,
    round_even(regen_soot_last, 2)                      AS fap_regen_fap_soot_end_gl,
    round_even(regen_soot_last - regen_soot_first, 2)   AS fap_regen_fap_soot_diff_gl,
    -- both regen figures need a regen distance > 0; a result of 0 reads as "no value"
    CASE WHEN regen_km > 0 AND regen_fuel <> 0
         THEN round_even(100 * regen_fuel / regen_km, 2) END            AS fap_regen_fuel_consumption_regen_l100km,
    CASE WHEN regen_km > 0 AND non_regen_km > 0 AND non_regen_fuel <> 0
         THEN round_even(100 * non_regen_fuel / non_regen_km, 2) END    AS fap_regen_fuel_consumption_non_regen_l100km,
    -- fuelConsumption
    CASE WHEN fuel_l <> 0 THEN round_even(fuel_l, 2) END                AS fuel_consumption_overall_total_l,
    CASE WHEN fuel_l <> 0 AND km > 0 THEN round_even(100 * fuel_l / km, 2) END AS fuel_consumption_overall_avg_l100km,
    CASE WHEN band0_km > 0 THEN round_even(100 * band0_fuel / band0_km, 2) END AS band_5_15_l100km,
    round_even(band0_km, 2) AS band_5_15_km,
    CASE WHEN band1_km > 0 THEN round_even(100 * band1_fuel / band1_km, 2) END AS band_15_25_l100km,
    round_even(band1_km, 2) AS band_15_25_km,
    CASE WHEN band2_km > 0 THEN round_even(100 * band2_fuel / band2_km, 2) END AS band_25_35_l100km,
    round_even(band2_km, 2) AS band_25_35_km,
    CASE WHEN band3_km > 0 THEN round_even(100 * band3_fuel / band3_km, 2) END AS band_35_45_l100km,
    round_even(band3_km, 2) AS band_35_45_km,
    CASE WHEN band4_km > 0 THEN round_even(100 * band4_fuel / band4_km, 2) END AS band_45_55_l100km,
    round_even(band4_km, 2) AS band_45_55_km,
    CASE WHEN band5_km > 0 THEN round_even(100 * band5_fuel / band5_km, 2) END AS band_55_65_l100km,
    round_even(band5_km, 2) AS band_55_65_km,
    CASE WHEN band6_km > 0 THEN round_even(100 * band6_fuel / band6_km, 2) END AS band_65_75_l100km,
    round_even(band6_km, 2) AS band_65_75_km,
    CASE WHEN band7_km > 0 THEN round_even(100 * band7_fuel / band7_km, 2) END AS band_75_85_l100km,
    round_even(band7_km, 2) AS band_75_85_km,
    CASE WHEN band8_km > 0 THEN round_even(100 * band8_fuel / band8_km, 2) END AS band_85_95_l100km,
    round_even(band8_km, 2) AS band_85_95_km,
    CASE WHEN band9_km > 0 THEN round_even(100 * band9_fuel / band9_km, 2) END AS band_95_105_l100km,
    round_even(band9_km, 2) AS band_95_105_km,
    CASE WHEN band10_km > 0 THEN round_even(100 * band10_fuel / band10_km, 2) END AS band_105_115_l100km,
    round_even(band10_km, 2) AS band_105_115_km,
    CASE WHEN band11_km > 0 THEN round_even(100 * band11_fuel / band11_km, 2) END AS band_115_125_l100km,
    round_even(band11_km, 2) AS band_115_125_km,
    CASE WHEN band12_km > 0 THEN round_even(100 * band12_fuel / band12_km, 2) END AS band_125_135_l100km,
    round_even(band12_km, 2) AS band_125_135_km,
    CASE WHEN band13_km > 0 THEN round_even(100 * band13_fuel / band13_km, 2) END AS band_135_145_l100km,
    round_even(band13_km, 2) AS band_135_145_km,
    CASE WHEN band14_km > 0 THEN round_even(100 * band14_fuel / band14_km, 2) END AS band_145_155_l100km,
    round_even(band14_km, 2) AS band_145_155_km,
    CASE WHEN band15_km > 0 THEN round_even(100 * band15_fuel / band15_km, 2) END AS band_155_165_l100km,
    round_even(band15_km, 2) AS band_155_165_km,
    CASE WHEN band16_km > 0 THEN round_even(100 * band16_fuel / band16_km, 2) END AS band_165_175_l100km,
    round_even(band16_km, 2) AS band_165_175_km,
    CASE WHEN band17_km > 0 THEN round_even(100 * band17_fuel / band17_km, 2) END AS band_175_185_l100km,
    round_even(band17_km, 2) AS band_175_185_km,
    CASE WHEN band18_km > 0 THEN round_even(100 * band18_fuel / band18_km, 2) END AS band_185_195_l100km,
    round_even(band18_km, 2) AS band_185_195_km,
    CASE WHEN band19_km > 0 THEN round_even(100 * band19_fuel / band19_km, 2) END AS band_195_200_l100km,
    round_even(band19_km, 2) AS band_195_200_km,
    CASE WHEN band20_km > 0 THEN round_even(100 * band20_fuel / band20_km, 2) END AS band_200_plus_l100km,
    round_even(band20_km, 2) AS band_200_plus_km,
    -- overall
    CASE WHEN has_speed THEN round_even(COALESCE(km, 0), 2) END          AS overall_distance_km,
    CASE WHEN speed_revs_rows > 0 THEN TRY_CAST(trunc(COALESCE(dur_all, 0)) AS BIGINT) END     AS overall_duration_overall_sec,
    CASE WHEN speed_revs_rows > 0 THEN TRY_CAST(trunc(COALESCE(dur_off, 0)) AS BIGINT) END     AS overall_duration_engine_off_sec,
    CASE WHEN speed_revs_rows > 0 THEN TRY_CAST(trunc(COALESCE(dur_on, 0)) AS BIGINT) END      AS overall_duration_engine_on_sec,
    CASE WHEN speed_revs_rows > 0 THEN TRY_CAST(trunc(COALESCE(dur_idle, 0)) AS BIGINT) END    AS overall_duration_idle_sec,
    CASE WHEN speed_revs_rows > 0 THEN TRY_CAST(trunc(COALESCE(dur_driving, 0)) AS BIGINT) END AS overall_duration_driving_sec,
    TRY_CAST(round_even(ext_avg, 0) AS BIGINT)              AS overall_external_temp_avg_c,
    TRY_CAST(round_even(ext_max, 0) AS BIGINT)              AS overall_external_temp_max_c,
    TRY_CAST(round_even(ext_min, 0) AS BIGINT)              AS overall_external_temp_min_c,
    to_char(first_ts, '%Y-%m-%d')                       AS overall_date_date,
    to_char(first_ts, '%H:%M:%S')                       AS overall_date_start,
    to_char(last_ts, '%H:%M:%S')                        AS overall_date_end,
    -- for the snapshot (not part of the JSON object)
    first_ts AS started_at,
    last_ts  AS ended_at
FROM (
    SELECT
        *,
        -- injectors: all four or none
        CASE WHEN i1 IS NOT NULL AND i2 IS NOT NULL AND i3 IS NOT NULL AND i4 IS NOT NULL THEN i1 END AS injector1,
        CASE WHEN i1 IS NOT NULL AND i2 IS NOT NULL AND i3 IS NOT NULL AND i4 IS NOT NULL THEN i2 END AS injector2,
        CASE WHEN i1 IS NOT NULL AND i2 IS NOT NULL AND i3 IS NOT NULL AND i4 IS NOT NULL THEN i3 END AS injector3,
        CASE WHEN i1 IS NOT NULL AND i2 IS NOT NULL AND i3 IS NOT NULL AND i4 IS NOT NULL THEN i4 END AS injector4
    FROM (
        SELECT
            *,
            round_even(CASE WHEN has_oil_temp THEN inj1_oil_warm ELSE inj1_coolant_warm END, 2) AS i1,
            round_even(CASE WHEN has_oil_temp THEN inj2_oil_warm ELSE inj2_coolant_warm END, 2) AS i2,
            round_even(CASE WHEN has_oil_temp THEN inj3_oil_warm ELSE inj3_coolant_warm END, 2) AS i3,
            round_even(CASE WHEN has_oil_temp THEN inj4_oil_warm ELSE inj4_coolant_warm END, 2) AS i4
        FROM judged
    ) AS rounded
) AS analysed
