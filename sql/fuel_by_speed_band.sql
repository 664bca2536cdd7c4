-- Snapshot: the analyst's `fuel_by_speed_band` table: per log and speed
-- band, the distance driven and the fuel consumption (analysis.md §4,
-- fuelConsumption.bySpeedRange), one row per band the log has rows in.
--
-- In:  results  log_analysis rows of this run (band_<band>_km and
--               band_<band>_l100km per band)
--      catalog  the backend's fap_analysis rows
-- Out: analysis_id, user_id, band ('35-45'), min_kmh (inclusive), max_kmh
--      (exclusive; NULL for 200+), distance_km, l100km.
--
-- A log's row becomes one row per band: unnest walks the three lists side
-- by side (one element per band, band_no order), in a single pass.
SELECT
    p.analysis_id,
    p.user_id,
    b.band,
    CAST(b.min_kmh AS INT) AS min_kmh,
    CAST(b.max_kmh AS INT) AS max_kmh,
    p.distance_km,
    p.l100km
FROM (
    SELECT
        c.analysis_id,
        c.user_id,
        unnest([
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
            11, 12, 13, 14, 15, 16, 17, 18, 19, 20
        ]) AS band_no,
        unnest([
            r.band_5_15_km, r.band_15_25_km, r.band_25_35_km, r.band_35_45_km,
            r.band_45_55_km, r.band_55_65_km, r.band_65_75_km, r.band_75_85_km,
            r.band_85_95_km, r.band_95_105_km, r.band_105_115_km, r.band_115_125_km,
            r.band_125_135_km, r.band_135_145_km, r.band_145_155_km, r.band_155_165_km,
            r.band_165_175_km, r.band_175_185_km, r.band_185_195_km, r.band_195_200_km,
            r.band_200_plus_km
        ]) AS distance_km,
        unnest([
            r.band_5_15_l100km, r.band_15_25_l100km, r.band_25_35_l100km, r.band_35_45_l100km,
            r.band_45_55_l100km, r.band_55_65_l100km, r.band_65_75_l100km, r.band_75_85_l100km,
            r.band_85_95_l100km, r.band_95_105_l100km, r.band_105_115_l100km, r.band_115_125_l100km,
            r.band_125_135_l100km, r.band_135_145_l100km, r.band_145_155_l100km, r.band_155_165_l100km,
            r.band_165_175_l100km, r.band_175_185_l100km, r.band_185_195_l100km, r.band_195_200_l100km,
            r.band_200_plus_l100km
        ]) AS l100km
    FROM results r
    JOIN catalog c ON c.analysis_id = r.log_id
    WHERE r.status = 'Success'
) AS p
JOIN (VALUES
    ( 0, '5-15', 5, 15),
    ( 1, '15-25', 15, 25),
    ( 2, '25-35', 25, 35),
    ( 3, '35-45', 35, 45),
    ( 4, '45-55', 45, 55),
    ( 5, '55-65', 55, 65),
    ( 6, '65-75', 65, 75),
    ( 7, '75-85', 75, 85),
    ( 8, '85-95', 85, 95),
    ( 9, '95-105', 95, 105),
    (10, '105-115', 105, 115),
    (11, '115-125', 115, 125),
    (12, '125-135', 125, 135),
    (13, '135-145', 135, 145),
    (14, '145-155', 145, 155),
    (15, '155-165', 155, 165),
    (16, '165-175', 165, 175),
    (17, '175-185', 175, 185),
    (18, '185-195', 185, 195),
    (19, '195-200', 195, 200),
    (20, '200+', 200, NULL)
) AS b(band_no, band, min_kmh, max_kmh) ON b.band_no = p.band_no
WHERE p.distance_km IS NOT NULL
