//! How the log scan travels between Ballista's client, scheduler and
//! executors.
//!
//! - Logical (client → scheduler): the `log_files` / `log_rows` table
//!   providers, as their numbered, partitioned list of logs; the scheduler
//!   rebuilds the provider and plans the scan itself.
//! - Physical (scheduler → executors): the scan's `DataSourceExec` over a
//!   [`LogSource`], as the bundles of logs of each of its file groups (only
//!   the task's own groups once Ballista has sliced the scan); the executor
//!   rebuilds the same scan.
//!
//! Everything else is Ballista's: both codecs wrap Ballista's own and hand it
//! what is not ours. A physical payload starts with a tag byte, because
//! Ballista's decoder takes any bytes for its own.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::scan::{
    BundledLog, LogBundle, LogInput, LogLimits, LogSet, LogSource, LogTable, TableKind,
};

/// The logical codec: the log tables, then Ballista's.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

/// The physical codec: the log scan, then Ballista's.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

/// Tag of a physical payload.
const BALLISTA: u8 = 0;
const LOG_SCAN: u8 = 1;

/// One log on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct WireLog {
    no: i64,
    id: String,
    location: String,
    bytes: u64,
    sha256: Option<String>,
}

impl WireLog {
    fn bundled(self) -> BundledLog {
        BundledLog {
            log_no: self.no,
            log_id: self.id,
            location: object_store::path::Path::from(self.location),
            bytes: self.bytes,
            sha256: self.sha256,
        }
    }

    fn of_bundled(log: &BundledLog) -> Self {
        Self {
            no: log.log_no,
            id: log.log_id.clone(),
            location: log.location.to_string(),
            bytes: log.bytes,
            sha256: log.sha256.clone(),
        }
    }
}

/// What both payloads share: which table, where the logs are, the limits.
#[derive(Debug, Serialize, Deserialize)]
struct WireScan {
    rows: bool,
    store: String,
    max_rows: u64,
    max_bytes: u64,
    /// Logical: per partition, its logs. Physical: per file group, its
    /// bundles of logs.
    partitions: Vec<Vec<Vec<WireLog>>>,
}

impl WireScan {
    fn kind(&self) -> TableKind {
        if self.rows {
            TableKind::Rows
        } else {
            TableKind::Files
        }
    }

    fn limits(&self) -> LogLimits {
        LogLimits {
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
        }
    }

    fn store(&self) -> Result<ObjectStoreUrl> {
        ObjectStoreUrl::parse(&self.store)
    }

    fn decode(buf: &[u8]) -> Result<Self> {
        serde_json::from_slice(buf)
            .map_err(|e| DataFusionError::Internal(format!("log scan payload: {e}")))
    }

    fn encode(&self, buf: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(buf, self)
            .map_err(|e| DataFusionError::Internal(format!("log scan payload: {e}")))
    }
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if !matches!(table_ref.table(), "log_files" | "log_rows") {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        }
        let wire = WireScan::decode(buf)?;
        let partitions = wire
            .partitions
            .iter()
            .map(|partition| {
                partition
                    .iter()
                    .flatten()
                    .map(|log| {
                        (
                            log.no,
                            LogInput {
                                log_id: log.id.clone(),
                                location: object_store::path::Path::from(log.location.as_str()),
                                bytes: log.bytes,
                                sha256: log.sha256.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .collect();
        let logs = LogSet::from_partitions(wire.store()?, partitions).with_limits(wire.limits());
        Ok(Arc::new(LogTable::new(Arc::new(logs), wire.kind())))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<LogTable>() else {
            return self.inner.try_encode_table_provider(table_ref, node, buf);
        };
        let logs = table.logs();
        let wire = WireScan {
            rows: table.kind() == TableKind::Rows,
            store: logs.store.as_str().to_string(),
            max_rows: logs.limits.max_rows,
            max_bytes: logs.limits.max_bytes,
            partitions: logs
                .partitions
                .iter()
                .map(|partition| {
                    vec![
                        partition
                            .iter()
                            .map(|(no, log)| WireLog {
                                no: *no,
                                id: log.log_id.clone(),
                                location: log.location.to_string(),
                                bytes: log.bytes,
                                sha256: log.sha256.clone(),
                            })
                            .collect(),
                    ]
                })
                .collect(),
        };
        wire.encode(buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&LOG_SCAN, payload)) => {
                let wire = WireScan::decode(payload)?;
                let (kind, limits, store) = (wire.kind(), wire.limits(), wire.store()?);
                let bundles = wire
                    .partitions
                    .into_iter()
                    .map(|group| {
                        group
                            .into_iter()
                            .map(|bundle| bundle.into_iter().map(WireLog::bundled).collect())
                            .collect()
                    })
                    .collect();
                let source = LogSource::new(kind, limits, None);
                crate::scan::scan_from_bundles(store, source, bundles)
            }
            Some((&BALLISTA, payload)) => {
                self.inner.try_decode(payload, inputs, ctx, proto_converter)
            }
            _ => Err(DataFusionError::Internal(
                "physical plan payload of an unknown kind".into(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(scan) = log_scan(&node) {
            buf.push(LOG_SCAN);
            return scan.encode(buf);
        }
        buf.push(BALLISTA);
        self.inner.try_encode(node, buf, proto_converter)
    }
}

/// The wire form of `node` when it is a log scan.
fn log_scan(node: &Arc<dyn ExecutionPlan>) -> Option<WireScan> {
    let exec = node.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let source = config.file_source().downcast_ref::<LogSource>()?;
    let partitions = config
        .file_groups
        .iter()
        .map(|group| {
            group
                .files()
                .iter()
                .map(|file| {
                    file.extensions
                        .get::<LogBundle>()
                        .map(|b| b.logs.iter().map(WireLog::of_bundled).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    Some(WireScan {
        rows: source.kind == TableKind::Rows,
        store: config.object_store_url.as_str().to_string(),
        max_rows: source.limits.max_rows,
        max_bytes: source.limits.max_bytes,
        partitions,
    })
}
