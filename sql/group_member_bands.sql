-- Per group: its analyses' speed bands, the input of group_average_bands.
--
-- In:  group_keys          one row per (group, analysis)
--      fuel_by_speed_band  per log and band: distance_km, l100km
-- Out: the group key and one row per analysis and band.
SELECT k.user_id, k.type, k.year, k.month, b.analysis_id, b.band, b.min_kmh, b.max_kmh, b.distance_km, b.l100km
FROM group_keys k
JOIN fuel_by_speed_band b ON b.analysis_id = k.analysis_id
