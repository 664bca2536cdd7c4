-- Per group: the average object of a group of analyses (analysis.md §5).
--
-- In:  group_members  one row per (group, analysis): the group key
--                     (user_id, type, year, month) and the analysis metric
--                     columns as DOUBLE (log_analysis.sql names), "fapRegen"
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
    TRY_CAST(round_even(COALESCE(SUM("overall_duration_engineOn_sec"), 0), 0) AS BIGINT)  AS "overall_duration_engineOn_sec",
    TRY_CAST(round_even(COALESCE(SUM("overall_duration_engineOff_sec"), 0), 0) AS BIGINT) AS "overall_duration_engineOff_sec",
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_idle_sec), 0), 0) AS BIGINT)      AS overall_duration_idle_sec,
    TRY_CAST(round_even(COALESCE(SUM(overall_duration_driving_sec), 0), 0) AS BIGINT)   AS overall_duration_driving_sec,
    -- driving
    TRY_CAST(round_even(MAX("driving_acceleration_max_perc"), 0) AS BIGINT) AS "driving_acceleration_max_perc",
    TRY_CAST(round_even(SUM("driving_acceleration_avg_perc" * "overall_duration_driving_sec") / NULLIF(SUM("overall_duration_driving_sec") FILTER (WHERE "driving_acceleration_avg_perc" IS NOT NULL), 0), 0) AS BIGINT) AS "driving_acceleration_avg_perc",
    TRY_CAST(round_even(MIN("driving_revs_min"), 0) AS BIGINT) AS "driving_revs_min",
    TRY_CAST(round_even(MAX("driving_revs_max"), 0) AS BIGINT) AS "driving_revs_max",
    TRY_CAST(round_even(SUM("driving_revs_avg" * "overall_duration_driving_sec") / NULLIF(SUM("overall_duration_driving_sec") FILTER (WHERE "driving_revs_avg" IS NOT NULL), 0), 0) AS BIGINT) AS "driving_revs_avg",
    TRY_CAST(round_even(SUM("driving_revs_avgDriving" * "overall_duration_driving_sec") / NULLIF(SUM("overall_duration_driving_sec") FILTER (WHERE "driving_revs_avgDriving" IS NOT NULL), 0), 0) AS BIGINT) AS "driving_revs_avgDriving",
    TRY_CAST(round_even(SUM("driving_speed_avg_kmh" * "overall_duration_driving_sec") / NULLIF(SUM("overall_duration_driving_sec") FILTER (WHERE "driving_speed_avg_kmh" IS NOT NULL), 0), 0) AS BIGINT) AS "driving_speed_avg_kmh",
    TRY_CAST(round_even(MAX("driving_speed_max_kmh"), 0) AS BIGINT) AS "driving_speed_max_kmh",
    -- engine
    round_even(AVG("engine_battery_beforeDrive_v"), 2) AS "engine_battery_beforeDrive_v",
    round_even(SUM("engine_battery_engineRunning_v" * "overall_duration_engineOn_sec") / NULLIF(SUM("overall_duration_engineOn_sec") FILTER (WHERE "engine_battery_engineRunning_v" IS NOT NULL), 0), 2) AS "engine_battery_engineRunning_v",
    TRY_CAST(round_even(MIN("engine_coolantTemp_min_c"), 0) AS BIGINT) AS "engine_coolantTemp_min_c",
    TRY_CAST(round_even(MAX("engine_coolantTemp_max_c"), 0) AS BIGINT) AS "engine_coolantTemp_max_c",
    TRY_CAST(round_even(SUM("engine_coolantTemp_avg_c" * "overall_duration_engineOn_sec") / NULLIF(SUM("overall_duration_engineOn_sec") FILTER (WHERE "engine_coolantTemp_avg_c" IS NOT NULL), 0), 0) AS BIGINT) AS "engine_coolantTemp_avg_c",
    round_even(AVG("engine_engineWarmup_coolant_sec"), 2) AS "engine_engineWarmup_coolant_sec",
    round_even(AVG("engine_engineWarmup_oil_sec"), 2) AS "engine_engineWarmup_oil_sec",
    TRY_CAST(round_even(MIN("engine_errors"), 0) AS BIGINT) AS "engine_errors_min",
    TRY_CAST(round_even(MAX("engine_errors"), 0) AS BIGINT) AS "engine_errors_max",
    TRY_CAST(round_even(MIN("engine_oilCarbonate_perc"), 0) AS BIGINT) AS "engine_oilCarbonate_min_perc",
    TRY_CAST(round_even(MAX("engine_oilCarbonate_perc"), 0) AS BIGINT) AS "engine_oilCarbonate_max_perc",
    TRY_CAST(round_even(MIN("engine_oilDilution_perc"), 0) AS BIGINT) AS "engine_oilDilution_min_perc",
    TRY_CAST(round_even(MAX("engine_oilDilution_perc"), 0) AS BIGINT) AS "engine_oilDilution_max_perc",
    TRY_CAST(round_even(MIN("engine_oilTemp_min_c"), 0) AS BIGINT) AS "engine_oilTemp_min_c",
    TRY_CAST(round_even(MAX("engine_oilTemp_max_c"), 0) AS BIGINT) AS "engine_oilTemp_max_c",
    TRY_CAST(round_even(SUM("engine_oilTemp_avg_c" * "overall_duration_engineOn_sec") / NULLIF(SUM("overall_duration_engineOn_sec") FILTER (WHERE "engine_oilTemp_avg_c" IS NOT NULL), 0), 0) AS BIGINT) AS "engine_oilTemp_avg_c",
    round_even(SUM("engine_injector_injector1" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_injector_injector1" IS NOT NULL), 0), 2) AS "engine_injector_injector1",
    round_even(SUM("engine_injector_injector2" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_injector_injector2" IS NOT NULL), 0), 2) AS "engine_injector_injector2",
    round_even(SUM("engine_injector_injector3" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_injector_injector3" IS NOT NULL), 0), 2) AS "engine_injector_injector3",
    round_even(SUM("engine_injector_injector4" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_injector_injector4" IS NOT NULL), 0), 2) AS "engine_injector_injector4",
    round_even(SUM("engine_injector_average" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_injector_average" IS NOT NULL), 0), 2) AS "engine_injector_average",
    round_even(SUM("engine_fuelPressure_avg_diff_idle_mbar" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "engine_fuelPressure_avg_diff_idle_mbar" IS NOT NULL), 0), 2) AS "engine_fuelPressure_avg_diff_idle_mbar",
    round_even(SUM("engine_boost_avg_diff_mbar" * "overall_duration_driving_sec") / NULLIF(SUM("overall_duration_driving_sec") FILTER (WHERE "engine_boost_avg_diff_mbar" IS NOT NULL), 0), 2) AS "engine_boost_avg_diff_mbar",
    -- fap
    TRY_CAST(round_even(MIN("fap_pressure_min_mbar"), 0) AS BIGINT) AS "fap_pressure_min_mbar",
    TRY_CAST(round_even(MAX("fap_pressure_max_mbar"), 0) AS BIGINT) AS "fap_pressure_max_mbar",
    TRY_CAST(round_even(SUM("fap_pressure_avg_mbar" * "overall_duration_engineOn_sec") / NULLIF(SUM("overall_duration_engineOn_sec") FILTER (WHERE "fap_pressure_avg_mbar" IS NOT NULL), 0), 0) AS BIGINT) AS "fap_pressure_avg_mbar",
    TRY_CAST(round_even(SUM("fap_pressure_idle_avg_mbar" * "overall_duration_idle_sec") / NULLIF(SUM("overall_duration_idle_sec") FILTER (WHERE "fap_pressure_idle_avg_mbar" IS NOT NULL), 0), 0) AS BIGINT) AS "fap_pressure_idle_avg_mbar",
    TRY_CAST(round_even(MIN("fap_temp_min_c"), 0) AS BIGINT) AS "fap_temp_min_c",
    TRY_CAST(round_even(MAX("fap_temp_max_c"), 0) AS BIGINT) AS "fap_temp_max_c",
    TRY_CAST(round_even(SUM("fap_temp_avg_c" * "overall_duration_engineOn_sec") / NULLIF(SUM("overall_duration_engineOn_sec") FILTER (WHERE "fap_temp_avg_c" IS NOT NULL), 0), 0) AS BIGINT) AS "fap_temp_avg_c",
    -- fapRegen, weighted by each regeneration's duration
    COALESCE(bool_or("fapRegen"), false) AS "fapRegen",
    COUNT("fapRegen_duration_sec") AS "fapRegen_numberOfRegens",
    round_even(AVG("fapRegen_previousRegen_km"), 2) AS "fapRegen_previousRegen_km",
    round_even(AVG("fapRegen_duration_sec"), 2) AS "fapRegen_duration_sec",
    round_even(SUM("fapRegen_distance_km" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_distance_km" IS NOT NULL), 0), 2) AS "fapRegen_distance_km",
    TRY_CAST(round_even(MIN("fapRegen_speed_min_kmh"), 0) AS BIGINT) AS "fapRegen_speed_min_kmh",
    TRY_CAST(round_even(MAX("fapRegen_speed_max_kmh"), 0) AS BIGINT) AS "fapRegen_speed_max_kmh",
    TRY_CAST(round_even(SUM("fapRegen_speed_avg_kmh" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_speed_avg_kmh" IS NOT NULL), 0), 0) AS BIGINT) AS "fapRegen_speed_avg_kmh",
    TRY_CAST(round_even(MIN("fapRegen_fapTemp_min_c"), 0) AS BIGINT) AS "fapRegen_fapTemp_min_c",
    TRY_CAST(round_even(MAX("fapRegen_fapTemp_max_c"), 0) AS BIGINT) AS "fapRegen_fapTemp_max_c",
    TRY_CAST(round_even(SUM("fapRegen_fapTemp_avg_c" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_fapTemp_avg_c" IS NOT NULL), 0), 0) AS BIGINT) AS "fapRegen_fapTemp_avg_c",
    TRY_CAST(round_even(MIN("fapRegen_fapPressure_min_mbar"), 0) AS BIGINT) AS "fapRegen_fapPressure_min_mbar",
    TRY_CAST(round_even(MAX("fapRegen_fapPressure_max_mbar"), 0) AS BIGINT) AS "fapRegen_fapPressure_max_mbar",
    TRY_CAST(round_even(SUM("fapRegen_fapPressure_avg_mbar" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_fapPressure_avg_mbar" IS NOT NULL), 0), 0) AS BIGINT) AS "fapRegen_fapPressure_avg_mbar",
    TRY_CAST(round_even(MIN("fapRegen_revs_min"), 0) AS BIGINT) AS "fapRegen_revs_min",
    TRY_CAST(round_even(MAX("fapRegen_revs_max"), 0) AS BIGINT) AS "fapRegen_revs_max",
    TRY_CAST(round_even(SUM("fapRegen_revs_avg" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_revs_avg" IS NOT NULL), 0), 0) AS BIGINT) AS "fapRegen_revs_avg",
    round_even(AVG("fapRegen_fapSoot_start_gl"), 2) AS "fapRegen_fapSoot_start_gl",
    round_even(AVG("fapRegen_fapSoot_end_gl"), 2) AS "fapRegen_fapSoot_end_gl",
    round_even(SUM("fapRegen_fuelConsumption_regen_l100km" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_fuelConsumption_regen_l100km" IS NOT NULL), 0), 2) AS "fapRegen_fuelConsumption_regen_l100km",
    round_even(SUM("fapRegen_fuelConsumption_nonRegen_l100km" * "fapRegen_duration_sec") / NULLIF(SUM("fapRegen_duration_sec") FILTER (WHERE "fapRegen_fuelConsumption_nonRegen_l100km" IS NOT NULL), 0), 2) AS "fapRegen_fuelConsumption_nonRegen_l100km",
    -- fuelConsumption
    TRY_CAST(round_even(COALESCE(SUM("fuelConsumption_overall_total_l"), 0), 0) AS BIGINT) AS "fuelConsumption_overall_total_l",
    round_even(SUM("fuelConsumption_overall_avg_l100km" * "overall_distance_km") / NULLIF(SUM("overall_distance_km") FILTER (WHERE "fuelConsumption_overall_avg_l100km" IS NOT NULL), 0), 2) AS "fuelConsumption_overall_avg_l100km",
    -- by speed band: w(l100km, km), present only when known
    round_even(SUM("fuelConsumption_bySpeedRange_5-15_l100km" * "fuelConsumption_bySpeedRange__5-15_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__5-15_km") FILTER (WHERE "fuelConsumption_bySpeedRange_5-15_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_5-15_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_15-25_l100km" * "fuelConsumption_bySpeedRange__15-25_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__15-25_km") FILTER (WHERE "fuelConsumption_bySpeedRange_15-25_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_15-25_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_25-35_l100km" * "fuelConsumption_bySpeedRange__25-35_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__25-35_km") FILTER (WHERE "fuelConsumption_bySpeedRange_25-35_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_25-35_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_35-45_l100km" * "fuelConsumption_bySpeedRange__35-45_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__35-45_km") FILTER (WHERE "fuelConsumption_bySpeedRange_35-45_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_35-45_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_45-55_l100km" * "fuelConsumption_bySpeedRange__45-55_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__45-55_km") FILTER (WHERE "fuelConsumption_bySpeedRange_45-55_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_45-55_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_55-65_l100km" * "fuelConsumption_bySpeedRange__55-65_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__55-65_km") FILTER (WHERE "fuelConsumption_bySpeedRange_55-65_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_55-65_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_65-75_l100km" * "fuelConsumption_bySpeedRange__65-75_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__65-75_km") FILTER (WHERE "fuelConsumption_bySpeedRange_65-75_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_65-75_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_75-85_l100km" * "fuelConsumption_bySpeedRange__75-85_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__75-85_km") FILTER (WHERE "fuelConsumption_bySpeedRange_75-85_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_75-85_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_85-95_l100km" * "fuelConsumption_bySpeedRange__85-95_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__85-95_km") FILTER (WHERE "fuelConsumption_bySpeedRange_85-95_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_85-95_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_95-105_l100km" * "fuelConsumption_bySpeedRange__95-105_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__95-105_km") FILTER (WHERE "fuelConsumption_bySpeedRange_95-105_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_95-105_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_105-115_l100km" * "fuelConsumption_bySpeedRange__105-115_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__105-115_km") FILTER (WHERE "fuelConsumption_bySpeedRange_105-115_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_105-115_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_115-125_l100km" * "fuelConsumption_bySpeedRange__115-125_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__115-125_km") FILTER (WHERE "fuelConsumption_bySpeedRange_115-125_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_115-125_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_125-135_l100km" * "fuelConsumption_bySpeedRange__125-135_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__125-135_km") FILTER (WHERE "fuelConsumption_bySpeedRange_125-135_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_125-135_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_135-145_l100km" * "fuelConsumption_bySpeedRange__135-145_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__135-145_km") FILTER (WHERE "fuelConsumption_bySpeedRange_135-145_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_135-145_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_145-155_l100km" * "fuelConsumption_bySpeedRange__145-155_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__145-155_km") FILTER (WHERE "fuelConsumption_bySpeedRange_145-155_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_145-155_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_155-165_l100km" * "fuelConsumption_bySpeedRange__155-165_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__155-165_km") FILTER (WHERE "fuelConsumption_bySpeedRange_155-165_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_155-165_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_165-175_l100km" * "fuelConsumption_bySpeedRange__165-175_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__165-175_km") FILTER (WHERE "fuelConsumption_bySpeedRange_165-175_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_165-175_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_175-185_l100km" * "fuelConsumption_bySpeedRange__175-185_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__175-185_km") FILTER (WHERE "fuelConsumption_bySpeedRange_175-185_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_175-185_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_185-195_l100km" * "fuelConsumption_bySpeedRange__185-195_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__185-195_km") FILTER (WHERE "fuelConsumption_bySpeedRange_185-195_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_185-195_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_195-200_l100km" * "fuelConsumption_bySpeedRange__195-200_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__195-200_km") FILTER (WHERE "fuelConsumption_bySpeedRange_195-200_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_195-200_l100km",
    round_even(SUM("fuelConsumption_bySpeedRange_200+_l100km" * "fuelConsumption_bySpeedRange__200+_km")
        / NULLIF(SUM("fuelConsumption_bySpeedRange__200+_km") FILTER (WHERE "fuelConsumption_bySpeedRange_200+_l100km" IS NOT NULL), 0), 2)
        AS "fuelConsumption_bySpeedRange_200+_l100km"
FROM group_members
GROUP BY user_id, type, year, month
ORDER BY user_id, type, year, month
