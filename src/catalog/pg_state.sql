-- fap-warehouse's own state in the backend's database, in its own schema:
-- the backend's tables are never changed. One row per run of the job.
CREATE TABLE IF NOT EXISTS fap_warehouse.runs (
    id                text PRIMARY KEY,            -- the snapshot id
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            text NOT NULL,               -- running, done, failed
    logs              integer,
    failed_logs       integer,
    analysis_messages integer,
    average_messages  integer,
    undelivered       integer,
    input_bytes       bigint,
    duration_seconds  double precision,
    error             text
);
