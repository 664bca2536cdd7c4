-- Group membership (analysis.md §5): which analyses each average is over.
--
-- In:  analysis  per-log results (analysis_id, status, log_year, log_month)
--      catalog   the backend's fap_analysis rows: whose each analysis is
-- Out: one row per (group, analysis): user_id, type, year, month, analysis_id.
--      OVERALL holds every successful analysis of a user; YEARLY those of the
--      log's year; MONTHLY those of its year and month (overall.date.date).
SELECT
    c.user_id,
    g.type,
    CASE WHEN g.type <> 'OVERALL' THEN a.log_year END AS year,
    CASE WHEN g.type = 'MONTHLY' THEN a.log_month END AS month,
    a.analysis_id
FROM analysis a
JOIN catalog c ON c.analysis_id = a.analysis_id
CROSS JOIN (VALUES ('OVERALL'), ('YEARLY'), ('MONTHLY')) AS g(type)
WHERE a.status = 'Success'
  AND (g.type = 'OVERALL' OR a.log_year IS NOT NULL)
