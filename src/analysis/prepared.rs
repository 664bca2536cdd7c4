//! Plans made once and run many times on other inputs.
//!
//! Planning the models (parsing, optimizing, choosing operators) costs about
//! 170 ms whatever the input; running them on a few logs costs a few ms. A
//! live worker or a run that averages many small groups would spend its time
//! planning. A [`Prepared`] plan is made once over placeholder inputs; each
//! run rebuilds only its leaves (the scans) around new inputs, resets the
//! operators' state, and executes.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::MemTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::scan::source::LogSource;
use crate::scan::{LogSet, scan_exec};

/// Registers `name` as an in-memory table of `batches`; with none it is a
/// placeholder of the right schema, whose rows each run of a [`Prepared`]
/// plan supplies through [`Input::Table`].
pub fn register_input(
    ctx: &SessionContext,
    name: &str,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let table = MemTable::try_new(schema.clone(), vec![batches])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// A physical plan ready to run again on new inputs.
#[derive(Debug, Clone)]
pub struct Prepared {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

/// One input of a run: a leaf of the plan and what replaces it.
pub enum Input<'a> {
    /// The in-memory table of this schema gets these batches.
    Table(SchemaRef, Vec<RecordBatch>),
    /// The log scans get these logs (split into as many partitions as the
    /// plan was made with).
    Logs(&'a LogSet),
}

impl Prepared {
    /// Plans `SELECT * FROM <table>` on `ctx`, whose inputs are registered
    /// with placeholder data of the right schema.
    pub async fn new(ctx: &SessionContext, table: &str) -> Result<Self> {
        Self::of(ctx, ctx.table(table).await?).await
    }

    /// Plans `frame`, a query on `ctx`.
    pub async fn of(ctx: &SessionContext, frame: DataFrame) -> Result<Self> {
        let plan = frame.create_physical_plan().await?;
        Ok(Self {
            plan,
            task: ctx.task_ctx(),
        })
    }

    /// The plan as made (for EXPLAIN and tests).
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }

    /// Runs the plan with its leaves rebuilt around `inputs`.
    pub fn execute(&self, inputs: &[Input<'_>]) -> Result<SendableRecordBatchStream> {
        let plan = Arc::clone(&self.plan)
            .transform_up(|node| {
                for input in inputs {
                    if let Some(leaf) = rebuild(&node, input)? {
                        return Ok(Transformed::yes(leaf));
                    }
                }
                Ok(Transformed::no(node))
            })?
            .data;
        let plan = reset_plan_states(plan)?;
        execute_stream(plan, Arc::clone(&self.task))
    }
}

fn rebuild(
    node: &Arc<dyn ExecutionPlan>,
    input: &Input<'_>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
        return Ok(None);
    };
    let source = exec.data_source().as_ref() as &dyn std::any::Any;
    match input {
        Input::Table(schema, batches) => {
            let Some(memory) = source.downcast_ref::<MemorySourceConfig>() else {
                return Ok(None);
            };
            if memory.original_schema().fields() != schema.fields() {
                return Ok(None);
            }
            let partitions = memory.partitions().len().max(1);
            let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
            for (i, batch) in batches.iter().enumerate() {
                parts[i % partitions].push(batch.clone());
            }
            let config = MemorySourceConfig::try_new(
                &parts,
                memory.original_schema(),
                memory.projection().clone(),
            )?;
            Ok(Some(DataSourceExec::from_data_source(config)))
        }
        Input::Logs(logs) => {
            let Some(files) = source.downcast_ref::<FileScanConfig>() else {
                return Ok(None);
            };
            let Some(log_source) =
                (files.file_source().as_ref() as &dyn std::any::Any).downcast_ref::<LogSource>()
            else {
                return Ok(None);
            };
            Ok(Some(scan_exec(logs, log_source.kind)?))
        }
    }
}
