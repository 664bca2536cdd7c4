-- The backend's tables (shared/spec/catalog.sql) for the embedded SQLite
-- catalog: same tables, columns and meanings; uuids, enums and jsonb as TEXT.
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    refresh_token TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS fap_analysis (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_name  TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'Processing' CHECK (status IN ('Processing', 'Success', 'Failed')),
    message    TEXT NOT NULL,
    analysis   TEXT,
    fap_regen  INTEGER NOT NULL DEFAULT 0,
    log_date   TEXT,
    log_year   INTEGER,
    log_month  INTEGER,
    distance   REAL,
    version    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX IF NOT EXISTS fap_analysis_user_sha256 ON fap_analysis (user_id, sha256);
CREATE TABLE IF NOT EXISTS fap_average (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type       TEXT NOT NULL DEFAULT 'OVERALL' CHECK (type IN ('OVERALL', 'MONTHLY', 'YEARLY')),
    year       INTEGER,
    month      INTEGER,
    status     TEXT NOT NULL DEFAULT 'CALCULATING' CHECK (status IN ('CALCULATING', 'SUCCESS', 'FAILED')),
    message    TEXT,
    sha256     TEXT,
    average    TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- SQLite treats NULLs as distinct in a UNIQUE index: key on the coalesced period.
CREATE UNIQUE INDEX IF NOT EXISTS fap_average_user_period
    ON fap_average (user_id, type, COALESCE(year, 0), COALESCE(month, 0));
