//! The engine's plan, pinned: one streaming plan for the whole volume.
//!
//! Memory flatness is tested as a structure, never as a timing: between the
//! scan and the per-log aggregate there is no operator that holds its whole
//! input (`WindowAggExec`, `SortExec`, `RepartitionExec`), only windows that
//! release each log when it ends (`BoundedWindowAggExec` in sorted mode),
//! and the aggregate emits each log when it ends (sorted mode). And results
//! do not depend on how the logs are split into partitions.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use fap_warehouse::analysis::engine::Engine;
use fap_warehouse::analysis::message::analysis_result;
use fap_warehouse::analysis::models::Models;
use fap_warehouse::scan::LogInput;

fn inputs(dir: &std::path::Path, count: usize) -> Vec<LogInput> {
    let mut paths = fap_warehouse::cli::gen_logs(dir, count, 20_000, 7).expect("logs");
    // A broken log and an empty one ride along: the plan must not change for them.
    std::fs::write(dir.join("broken.csv"), b"\x00\x01\x02 not a log").unwrap();
    std::fs::write(dir.join("empty.csv"), b"").unwrap();
    paths.push(dir.join("broken.csv"));
    paths.push(dir.join("empty.csv"));
    let mut inputs: Vec<LogInput> = paths
        .iter()
        .map(|p| LogInput::from_path(p).unwrap())
        .collect();
    inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    inputs
}

/// Every operator name from the root down to the leaves, per path.
fn operators(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<String>) {
    out.push(plan.name().to_string());
    for child in plan.children() {
        operators(child, out);
    }
}

#[tokio::test]
async fn no_operator_holds_the_whole_volume() {
    let dir = tempfile::tempdir().unwrap();
    for partitions in [1, 2, 4] {
        let engine = Engine::new(Models::embedded()).with_partitions(partitions);
        let logs = engine.log_set(ObjectStoreUrl::local_filesystem(), inputs(dir.path(), 12));
        let ctx = engine.context();
        let plan = engine.analysis_plan(&ctx, Arc::new(logs)).await.unwrap();
        let text = displayable(plan.as_ref()).indent(true).to_string();
        let mut names = Vec::new();
        operators(&plan, &mut names);
        for buffering in [
            "WindowAggExec",
            "SortExec",
            "RepartitionExec",
            "SortPreservingMergeExec",
        ] {
            assert!(
                !names.iter().any(|n| n == buffering),
                "{buffering} with {partitions} partitions: {names:?}"
            );
        }
        let windows = names
            .iter()
            .filter(|n| *n == "BoundedWindowAggExec")
            .count();
        assert_eq!(windows, 3, "{names:?}");
        assert_eq!(
            text.matches("mode=[Sorted]").count(),
            3,
            "every window in sorted mode"
        );
        assert!(
            text.contains("ordering_mode=Sorted"),
            "the per-log aggregate emits each log as it ends"
        );
        assert!(
            text.contains("output_partitioning=Range("),
            "the scan declares its partitioning"
        );
    }
}

#[tokio::test]
async fn results_do_not_depend_on_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for partitions in [1, 2, 4] {
        let engine = Engine::new(Models::embedded()).with_partitions(partitions);
        let logs = engine.log_set(ObjectStoreUrl::local_filesystem(), inputs(dir.path(), 12));
        let result = engine.analyse(logs).await.unwrap();
        let messages: Vec<String> = (0..result.batch.num_rows())
            .map(|row| analysis_result(&result.batch, row).to_string())
            .collect();
        assert_eq!(messages.len(), 14);
        seen.push(messages);
    }
    assert_eq!(seen[0], seen[1], "1 vs 2 partitions");
    assert_eq!(seen[0], seen[2], "1 vs 4 partitions");
}

/// The plan a run makes before it knows its logs (over none) is the plan
/// over the logs, operator for operator, and gives the same results; the
/// schema it hands over before optimizing (the models downstream are
/// planned from it meanwhile) is the schema of the rows it gives.
#[tokio::test]
async fn a_plan_made_before_the_logs_are_known_is_the_same() {
    use datafusion::arrow::array::RecordBatch;
    use fap_warehouse::analysis::prepared::Input;
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(Models::embedded()).with_partitions(2);
    let store = ObjectStoreUrl::local_filesystem();
    let mut early = None;
    let prepared = engine
        .prepare_analysis_then(store.clone(), |schema| early = Some(schema))
        .await
        .unwrap();
    let early = early.expect("the schema is handed over");
    assert_eq!(early.fields(), prepared.plan().schema().fields());
    let logs = engine.log_set(store, inputs(dir.path(), 12));
    let fresh = engine
        .analysis_plan(&engine.context(), Arc::new(logs.clone()))
        .await
        .unwrap();
    let (mut ahead, mut after) = (Vec::new(), Vec::new());
    operators(prepared.plan(), &mut ahead);
    operators(&fresh, &mut after);
    assert_eq!(ahead, after);

    let batches: Vec<RecordBatch> = prepared
        .execute(&[Input::Logs(&logs)])
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut messages: Vec<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|row| analysis_result(b, row).to_string()))
        .collect();
    messages.sort();
    let expected = engine.analyse(logs).await.unwrap();
    let mut expected: Vec<String> = (0..expected.batch.num_rows())
        .map(|row| analysis_result(&expected.batch, row).to_string())
        .collect();
    expected.sort();
    assert_eq!(messages.len(), 14);
    assert_eq!(messages, expected);
    assert!(
        batches
            .iter()
            .all(|b| b.schema().fields() == early.fields())
    );
}

/// The corrected timestamp rule (contract §2.2, 2026-11-28): rows with a
/// trailing dot (`15:00:11.`) are kept, so they take their share of dt and
/// the log's fuel figures change with them.
#[tokio::test]
async fn regression_trailing_dot_times_keep_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let header = "Date;Time;Speed;Revs;InjFlow\n";
    let mut dotted = header.to_string();
    let mut plain = header.to_string();
    for s in 0..30 {
        let time = if s % 3 == 0 {
            format!("15:00:{s:02}.")
        } else {
            format!("15:00:{s:02}.0")
        };
        dotted.push_str(&format!("2025.02.03;{time};50;2000;20\n"));
        if s % 3 != 0 {
            plain.push_str(&format!("2025.02.03;15:00:{s:02}.0;50;2000;20\n"));
        }
    }
    std::fs::write(dir.path().join("dotted.csv"), dotted).unwrap();
    std::fs::write(dir.path().join("plain.csv"), plain).unwrap();
    let engine = Engine::new(Models::embedded());
    let result = engine
        .analyse_files(&[dir.path().join("dotted.csv"), dir.path().join("plain.csv")])
        .await
        .unwrap();
    let dotted = analysis_result(&result.batch, 0);
    let plain = analysis_result(&result.batch, 1);
    assert_eq!(dotted["analysisId"], "dotted");
    assert_eq!(
        dotted["analysis"]["overall"]["duration"]["overall_sec"], 29,
        "{dotted}"
    );
    assert_ne!(
        dotted["analysis"]["fuelConsumption"]["overall"]["total_l"],
        plain["analysis"]["fuelConsumption"]["overall"]["total_l"],
        "the kept rows carry fuel"
    );
}
