-- Per group and speed band: the average fuel consumption (analysis.md §5,
-- fuelConsumption.bySpeedRange), weighted by each analysis' distance in the
-- band: w(l100km, distance_km) = Σ l100km·km / Σ km over the analyses where
-- both are known. A band whose average is unknown is left out.
--
-- In:  group_member_bands  the group key, band, distance_km and l100km of
--                          each analysis of the group
-- Out: user_id, type, year, month, band, min_kmh, max_kmh, l100km; year and
--      month as INT, as in the average table.
SELECT
    user_id, type,
    CAST(year AS INT) AS year,
    CAST(month AS INT) AS month,
    band, min_kmh, max_kmh, l100km
FROM (
    SELECT
        user_id, type, year, month, band,
        MIN(min_kmh) AS min_kmh,
        MAX(max_kmh) AS max_kmh,
        round_even(SUM(l100km * distance_km)
            / NULLIF(SUM(distance_km) FILTER (WHERE l100km IS NOT NULL), 0), 2) AS l100km
    FROM group_member_bands
    GROUP BY user_id, type, year, month, band
) AS averaged
WHERE l100km IS NOT NULL
