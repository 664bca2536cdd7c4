-- Per group: the average object of a group of analyses (analysis.md §5).
--
-- In:  group_members  one row per (group, analysis): the group key
--                     (user_id, type, year, month) and the analysis metric
--                     columns as DOUBLE (log_analysis.sql names), fap_regen
--                     true where the analysis has one
-- Out: one row per group: n_analyses and one column per average metric,
--      named by its JSON path joined with `_`.
--
-- Notation of the contract: w(v, k) = Σ v·k / Σ k over the analyses where
-- both are known, written SUM(v * k) / NULLIF(SUM(k) FILTER (WHERE v IS NOT
-- NULL), 0); integer results are TRY_CAST(round_even(x, 0) AS BIGINT); a sum
-- over a key that no analysis has is 0.
SELECT
    user_id,
    type,
    year,
    month,
    COUNT(*) AS n_analyses,
    -- overall
    round_even(COALESCE(SUM(overall_distance_km), 0), 2)                       AS overall_distance_km,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_overall_sec), 0), 0) AS BIGINT)   AS overall_duration_overall_sec,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_engine_on_sec), 0), 0) AS BIGINT)  AS overall_duration_engine_on_sec,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_engine_off_sec), 0), 0) AS BIGINT) AS overall_duration_engine_off_sec,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_idle_sec), 0), 0) AS BIGINT)      AS overall_duration_idle_sec,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_driving_sec), 0), 0) AS BIGINT)   AS overall_duration_driving_sec,
    -- driving
    TRY_CAST(round_even(MAX(driving_acceleration_max_perc), 0) AS BIGINT) AS driving_acceleration_max_perc,
    TRY_CAST(round_even(SUM(driving_acceleration_avg_perc * overall_duration_driving_sec) / NULLIF(SUM(overall_duration_driving_sec) FILTER (WHERE driving_acceleration_avg_perc IS NOT NULL), 0), 0) AS BIGINT) AS driving_acceleration_avg_perc,
    TRY_CAST(round_even(MIN(driving_revs_min), 0) AS BIGINT) AS driving_revs_min,
    TRY_CAST(round_even(MAX(driving_revs_max), 0) AS BIGINT) AS driving_revs_max,
    TRY_CAST(round_even(SUM(driving_revs_avg * overall_duration_driving_sec) / NULLIF(SUM(overall_duration_driving_sec) FILTER (WHERE driving_revs_avg IS NOT NULL), 0), 0) AS BIGINT) AS driving_revs_avg,
    TRY_CAST(round_even(SUM(driving_revs_avg_driving * overall_duration_driving_sec) / NULLIF(SUM(overall_duration_driving_sec) FILTER (WHERE driving_revs_avg_driving IS NOT NULL), 0), 0) AS BIGINT) AS driving_revs_avg_driving,
    TRY_CAST(round_even(SUM(driving_speed_avg_kmh * overall_duration_driving_sec) / NULLIF(SUM(overall_duration_driving_sec) FILTER (WHERE driving_speed_avg_kmh IS NOT NULL), 0), 0) AS BIGINT) AS driving_speed_avg_kmh,
    TRY_CAST(round_even(MAX(driving_speed_max_kmh), 0) AS BIGINT) AS driving_speed_max_kmh,
    -- engine
    round_even(AVG(engine_battery_before_drive_v), 2) AS engine_battery_before_drive_v,
    round_even(SUM(engine_battery_engine_running_v * overall_duration_engine_on_sec) / NULLIF(SUM(overall_duration_engine_on_sec) FILTER (WHERE engine_battery_engine_running_v IS NOT NULL), 0), 2) AS engine_battery_engine_running_v,
    TRY_CAST(round_even(MIN(engine_coolant_temp_min_c), 0) AS BIGINT) AS engine_coolant_temp_min_c,
    TRY_CAST(round_even(MAX(engine_coolant_temp_max_c), 0) AS BIGINT) AS engine_coolant_temp_max_c,
    TRY_CAST(round_even(SUM(engine_coolant_temp_avg_c * overall_duration_engine_on_sec) / NULLIF(SUM(overall_duration_engine_on_sec) FILTER (WHERE engine_coolant_temp_avg_c IS NOT NULL), 0), 0) AS BIGINT) AS engine_coolant_temp_avg_c,
    round_even(AVG(engine_engine_warmup_coolant_sec), 2) AS engine_engine_warmup_coolant_sec,
    round_even(AVG(engine_engine_warmup_oil_sec), 2) AS engine_engine_warmup_oil_sec,
    TRY_CAST(round_even(MIN(engine_errors), 0) AS BIGINT) AS engine_errors_min,
    TRY_CAST(round_even(MAX(engine_errors), 0) AS BIGINT) AS engine_errors_max,
    TRY_CAST(round_even(MIN(engine_oil_carbonate_perc), 0) AS BIGINT) AS engine_oil_carbonate_min_perc,
    TRY_CAST(round_even(MAX(engine_oil_carbonate_perc), 0) AS BIGINT) AS engine_oil_carbonate_max_perc,
    TRY_CAST(round_even(MIN(engine_oil_dilution_perc), 0) AS BIGINT) AS engine_oil_dilution_min_perc,
    TRY_CAST(round_even(MAX(engine_oil_dilution_perc), 0) AS BIGINT) AS engine_oil_dilution_max_perc,
    TRY_CAST(round_even(MIN(engine_oil_temp_min_c), 0) AS BIGINT) AS engine_oil_temp_min_c,
    TRY_CAST(round_even(MAX(engine_oil_temp_max_c), 0) AS BIGINT) AS engine_oil_temp_max_c,
    TRY_CAST(round_even(SUM(engine_oil_temp_avg_c * overall_duration_engine_on_sec) / NULLIF(SUM(overall_duration_engine_on_sec) FILTER (WHERE engine_oil_temp_avg_c IS NOT NULL), 0), 0) AS BIGINT) AS engine_oil_temp_avg_c,
    round_even(SUM(engine_injector_injector1 * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_injector_injector1 IS NOT NULL), 0), 2) AS engine_injector_injector1,
    round_even(SUM(engine_injector_injector2 * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_injector_injector2 IS NOT NULL), 0), 2) AS engine_injector_injector2,
    round_even(SUM(engine_injector_injector3 * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_injector_injector3 IS NOT NULL), 0), 2) AS engine_injector_injector3,
    round_even(SUM(engine_injector_injector4 * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_injector_injector4 IS NOT NULL), 0), 2) AS engine_injector_injector4,
    round_even(SUM(engine_injector_average * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_injector_average IS NOT NULL), 0), 2) AS engine_injector_average,
    round_even(SUM(engine_fuel_pressure_avg_diff_idle_mbar * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE engine_fuel_pressure_avg_diff_idle_mbar IS NOT NULL), 0), 2) AS engine_fuel_pressure_avg_diff_idle_mbar,
    round_even(SUM(engine_boost_avg_diff_mbar * overall_duration_driving_sec) / NULLIF(SUM(overall_duration_driving_sec) FILTER (WHERE engine_boost_avg_diff_mbar IS NOT NULL), 0), 2) AS engine_boost_avg_diff_mbar,
    -- fap
    TRY_CAST(round_even(MIN(fap_pressure_min_mbar), 0) AS BIGINT) AS fap_pressure_min_mbar,
    TRY_CAST(round_even(MAX(fap_pressure_max_mbar), 0) AS BIGINT) AS fap_pressure_max_mbar,
    TRY_CAST(round_even(SUM(fap_pressure_avg_mbar * overall_duration_engine_on_sec) / NULLIF(SUM(overall_duration_engine_on_sec) FILTER (WHERE fap_pressure_avg_mbar IS NOT NULL), 0), 0) AS BIGINT) AS fap_pressure_avg_mbar,
    TRY_CAST(round_even(SUM(fap_pressure_idle_avg_mbar * overall_duration_idle_sec) / NULLIF(SUM(overall_duration_idle_sec) FILTER (WHERE fap_pressure_idle_avg_mbar IS NOT NULL), 0), 0) AS BIGINT) AS fap_pressure_idle_avg_mbar,
    TRY_CAST(round_even(MIN(fap_temp_min_c), 0) AS BIGINT) AS fap_temp_min_c,
    TRY_CAST(round_even(MAX(fap_temp_max_c), 0) AS BIGINT) AS fap_temp_max_c,
    TRY_CAST(round_even(SUM(fap_temp_avg_c * overall_duration_engine_on_sec) / NULLIF(SUM(overall_duration_engine_on_sec) FILTER (WHERE fap_temp_avg_c IS NOT NULL), 0), 0) AS BIGINT) AS fap_temp_avg_c,
    -- fapRegen, weighted by each regeneration's duration
    COALESCE(bool_or(fap_regen), false) AS fap_regen,
    COUNT(fap_regen_duration_sec) AS fap_regen_number_of_regens,
    round_even(AVG(fap_regen_previous_regen_km), 2) AS fap_regen_previous_regen_km,
    round_even(AVG(fap_regen_duration_sec), 2) AS fap_regen_duration_sec,
    round_even(SUM(fap_regen_distance_km * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_distance_km IS NOT NULL), 0), 2) AS fap_regen_distance_km,
    TRY_CAST(round_even(MIN(fap_regen_speed_min_kmh), 0) AS BIGINT) AS fap_regen_speed_min_kmh,
    TRY_CAST(round_even(MAX(fap_regen_speed_max_kmh), 0) AS BIGINT) AS fap_regen_speed_max_kmh,
    TRY_CAST(round_even(SUM(fap_regen_speed_avg_kmh * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_speed_avg_kmh IS NOT NULL), 0), 0) AS BIGINT) AS fap_regen_speed_avg_kmh,
    TRY_CAST(round_even(MIN(fap_regen_fap_temp_min_c), 0) AS BIGINT) AS fap_regen_fap_temp_min_c,
    TRY_CAST(round_even(MAX(fap_regen_fap_temp_max_c), 0) AS BIGINT) AS fap_regen_fap_temp_max_c,
    TRY_CAST(round_even(SUM(fap_regen_fap_temp_avg_c * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_fap_temp_avg_c IS NOT NULL), 0), 0) AS BIGINT) AS fap_regen_fap_temp_avg_c,
    TRY_CAST(round_even(MIN(fap_regen_fap_pressure_min_mbar), 0) AS BIGINT) AS fap_regen_fap_pressure_min_mbar,
    TRY_CAST(round_even(MAX(fap_regen_fap_pressure_max_mbar), 0) AS BIGINT) AS fap_regen_fap_pressure_max_mbar,
    TRY_CAST(round_even(SUM(fap_regen_fap_pressure_avg_mbar * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_fap_pressure_avg_mbar IS NOT NULL), 0), 0) AS BIGINT) AS fap_regen_fap_pressure_avg_mbar,
    TRY_CAST(round_even(MIN(fap_regen_revs_min), 0) AS BIGINT) AS fap_regen_revs_min,
    TRY_CAST(round_even(MAX(fap_regen_revs_max), 0) AS BIGINT) AS fap_regen_revs_max,
    TRY_CAST(round_even(SUM(fap_regen_revs_avg * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_revs_avg IS NOT NULL), 0), 0) AS BIGINT) AS fap_regen_revs_avg,
    round_even(AVG(fap_regen_fap_soot_start_gl), 2) AS fap_regen_fap_soot_start_gl,
    round_even(AVG(fap_regen_fap_soot_end_gl), 2) AS fap_regen_fap_soot_end_gl,
    round_even(SUM(fap_regen_fuel_consumption_regen_l100km * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_fuel_consumption_regen_l100km IS NOT NULL), 0), 2) AS fap_regen_fuel_consumption_regen_l100km,
    round_even(SUM(fap_regen_fuel_consumption_non_regen_l100km * fap_regen_duration_sec) / NULLIF(SUM(fap_regen_duration_sec) FILTER (WHERE fap_regen_fuel_consumption_non_regen_l100km IS NOT NULL), 0), 2) AS fap_regen_fuel_consumption_non_regen_l100km,
    -- fuelConsumption
    TRY_CAST(round_even(COALESCE(SUM(fuel_consumption_overall_total_l), 0), 0) AS BIGINT) AS fuel_consumption_overall_total_l,
    round_even(SUM(fuel_consumption_overall_avg_l100km * overall_distance_km) / NULLIF(SUM(overall_distance_km) FILTER (WHERE fuel_consumption_overall_avg_l100km IS NOT NULL), 0), 2) AS fuel_consumption_overall_avg_l100km
    -- speed bands: group_average_bands.sql
FROM group_members
GROUP BY user_id, type, year, month
