-- A copy of the backend's schema (shared/spec/catalog.sql), used by docker-compose to
-- stand in for the backend's migrations and by the PostgreSQL tests.
-- The backend's tables in PostgreSQL, as its migrations leave them.
-- fap-warehouse reads users / fap_analysis (and fap_average to compare) and
-- never changes their shape. Tests can create them with this file to stand in
-- for the backend. (The backend's own defaults use uuid_generate_v4() from the
-- uuid-ossp extension; gen_random_uuid() is equivalent and built in.)

CREATE TYPE fap_analysis_status_enum AS ENUM ('Processing', 'Success', 'Failed');
CREATE TYPE fap_average_status_enum AS ENUM ('CALCULATING', 'SUCCESS', 'FAILED');
CREATE TYPE fap_average_type_enum AS ENUM ('OVERALL', 'MONTHLY', 'YEARLY');

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         varchar(255) NOT NULL UNIQUE,
    password_hash varchar(255) NOT NULL,
    refresh_token varchar(255),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per uploaded log; the log itself is <volume>/<id>.csv.
-- sha256 is the hex digest of the uploaded file's bytes.
CREATE TABLE fap_analysis (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_name  varchar(255) NOT NULL,            -- the name the user uploaded
    sha256     char(64) NOT NULL,
    status     fap_analysis_status_enum NOT NULL DEFAULT 'Processing',
    message    varchar(255) NOT NULL,
    analysis   jsonb,
    fap_regen  boolean NOT NULL DEFAULT false,
    log_date   timestamptz,
    log_year   integer,                          -- UTC year of log_date
    log_month  integer,                          -- UTC month (1-12) of log_date
    distance   numeric(10, 2),
    version    varchar(255) NOT NULL DEFAULT '', -- analyser version that produced it
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX fap_analysis_user_sha256 ON fap_analysis (user_id, sha256);

-- One row per user and period: OVERALL (year, month NULL), YEARLY (month NULL),
-- MONTHLY. sha256 holds the analysisSha of the average.result it came from.
CREATE TABLE fap_average (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type       fap_average_type_enum NOT NULL DEFAULT 'OVERALL',
    year       integer,
    month      integer,
    status     fap_average_status_enum NOT NULL DEFAULT 'CALCULATING',
    message    text,
    sha256     char(64),
    average    jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX fap_average_user_period ON fap_average (user_id, type, year, month);
