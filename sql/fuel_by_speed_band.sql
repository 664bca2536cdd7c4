-- Snapshot: the analyst's `fuel_by_speed_band` table: per log and speed
-- band, the distance driven and the fuel consumption (analysis.md §4,
-- fuelConsumption.bySpeedRange), one row per band the log has rows in.
--
-- In:  results  log_analysis rows of this run (band_<band>_km and
--               band_<band>_l100km per band)
--      catalog  the backend's fap_analysis rows
-- Out: analysis_id, user_id, band ('35-45'), min_kmh (inclusive), max_kmh
--      (exclusive; NULL for 200+), distance_km, l100km.
SELECT analysis_id, user_id, band, min_kmh, max_kmh, distance_km, l100km
FROM (
    SELECT
        c.analysis_id,
        c.user_id,
        b.band_no,
        b.band,
        CAST(b.min_kmh AS INT) AS min_kmh,
        CAST(b.max_kmh AS INT) AS max_kmh,
        CASE b.band_no
            WHEN  0 THEN r.band_5_15_km
            WHEN  1 THEN r.band_15_25_km
            WHEN  2 THEN r.band_25_35_km
            WHEN  3 THEN r.band_35_45_km
            WHEN  4 THEN r.band_45_55_km
            WHEN  5 THEN r.band_55_65_km
            WHEN  6 THEN r.band_65_75_km
            WHEN  7 THEN r.band_75_85_km
            WHEN  8 THEN r.band_85_95_km
            WHEN  9 THEN r.band_95_105_km
            WHEN 10 THEN r.band_105_115_km
            WHEN 11 THEN r.band_115_125_km
            WHEN 12 THEN r.band_125_135_km
            WHEN 13 THEN r.band_135_145_km
            WHEN 14 THEN r.band_145_155_km
            WHEN 15 THEN r.band_155_165_km
            WHEN 16 THEN r.band_165_175_km
            WHEN 17 THEN r.band_175_185_km
            WHEN 18 THEN r.band_185_195_km
            WHEN 19 THEN r.band_195_200_km
            WHEN 20 THEN r.band_200_plus_km
        END AS distance_km,
        CASE b.band_no
            WHEN  0 THEN r.band_5_15_l100km
            WHEN  1 THEN r.band_15_25_l100km
            WHEN  2 THEN r.band_25_35_l100km
            WHEN  3 THEN r.band_35_45_l100km
            WHEN  4 THEN r.band_45_55_l100km
            WHEN  5 THEN r.band_55_65_l100km
            WHEN  6 THEN r.band_65_75_l100km
            WHEN  7 THEN r.band_75_85_l100km
            WHEN  8 THEN r.band_85_95_l100km
            WHEN  9 THEN r.band_95_105_l100km
            WHEN 10 THEN r.band_105_115_l100km
            WHEN 11 THEN r.band_115_125_l100km
            WHEN 12 THEN r.band_125_135_l100km
            WHEN 13 THEN r.band_135_145_l100km
            WHEN 14 THEN r.band_145_155_l100km
            WHEN 15 THEN r.band_155_165_l100km
            WHEN 16 THEN r.band_165_175_l100km
            WHEN 17 THEN r.band_175_185_l100km
            WHEN 18 THEN r.band_185_195_l100km
            WHEN 19 THEN r.band_195_200_l100km
            WHEN 20 THEN r.band_200_plus_l100km
        END AS l100km
    FROM results r
    JOIN catalog c ON c.analysis_id = r.log_id
    CROSS JOIN (VALUES
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
    ) AS b(band_no, band, min_kmh, max_kmh)
    WHERE r.status = 'Success'
) AS banded
WHERE distance_km IS NOT NULL
