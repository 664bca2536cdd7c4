-- Per group: its analyses with their metrics, the input of group_average.
--
-- In:  group_keys  one row per (group, analysis)
--      analysis    per-log results (metric columns)
-- Out: the group key (type, year, month; user_id from the analysis) and every
--      column of the analysis.
SELECT k.type, k.year, k.month, a.*
FROM group_keys k
JOIN analysis a ON a.analysis_id = k.analysis_id
