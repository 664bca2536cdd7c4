//! fap-warehouse's integration tests: one test binary (each DataFusion link
//! costs minutes on two cores), one module per area. Tests that need NATS or
//! PostgreSQL use the real services on 127.0.0.1 (`.ci/run` starts them).

mod common;

mod analyst;
#[cfg(feature = "ballista")]
mod ballista;
mod batch_job;
mod contract_cases;
mod fixture_parity;
mod hardening;
mod nats_delivery;
mod plan_shape;
mod postgres_cycle;
mod serve;
mod sql_logic;
