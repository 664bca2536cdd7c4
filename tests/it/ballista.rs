//! The analysis on Ballista gives what the local engine gives:
//! - a standalone session (in-process scheduler and executor, so the plan
//!   still goes through the codecs, the slicing and the shuffles), on the
//!   real fixtures, generated and broken logs, from `file://` and from an
//!   in-memory object store;
//! - a cluster of `fap-warehouse scheduler` and two `fap-warehouse executor`
//!   processes: `run --engine ballista://…` writes the snapshot tables and
//!   outbox a local run writes, an executor killed mid-run never leaves a
//!   partial snapshot, and an unreachable scheduler fails before anything
//!   is written.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use fap_warehouse::analysis::engine::Engine;
use fap_warehouse::analysis::models::Models;
use fap_warehouse::scan::LogInput;

use crate::common::run_bin;

/// Local and standalone-Ballista analyses of `inputs` in `store`.
async fn both_ways(
    engine: &Engine,
    store: ObjectStoreUrl,
    inputs: Vec<LogInput>,
) -> (RecordBatch, RecordBatch) {
    let local = engine
        .analyse(engine.log_set(store.clone(), inputs.clone()))
        .await
        .expect("local analysis");
    let ctx = fap_warehouse::distributed::standalone_context(engine)
        .await
        .expect("standalone Ballista");
    let remote = engine
        .analyse_in(&ctx, engine.log_set(store, inputs))
        .await
        .expect("Ballista analysis");
    (local.batch, remote.batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_session_analyses_like_the_local_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths =
        fap_warehouse::cli::gen_logs(&dir.path().join("gen"), 12, 20_000, 81).expect("logs");
    let broken = dir.path().join("gen/broken-log.csv");
    std::fs::write(&broken, "Date;Time;Speed\nnot;a;log\n").expect("broken log");
    paths.push(broken);
    if let Some(real) = crate::common::real_fixtures() {
        for entry in std::fs::read_dir(real.join("logs")).expect("fixture logs") {
            paths.push(entry.expect("entry").path());
        }
    }
    let mut inputs: Vec<LogInput> = paths
        .iter()
        .map(|p| LogInput::from_path(p).expect("input"))
        .collect();
    inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    // More partitions than the standalone executor's slots: several tasks.
    let engine = Engine::new(Models::embedded()).with_partitions(3);
    let (local, remote) =
        both_ways(&engine, ObjectStoreUrl::local_filesystem(), inputs.clone()).await;
    assert_eq!(local.num_rows(), inputs.len());
    assert_eq!(remote, local, "file:// volume: Ballista equals local");

    // The same logs in an in-memory object store.
    let store = Arc::new(object_store::memory::InMemory::new());
    let volume = fap_warehouse::volume::Volume::in_memory(store.clone());
    let mut memory_inputs = Vec::new();
    for path in &paths {
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let bytes = std::fs::read(path).expect("log");
        volume.put(&id, bytes.clone().into()).await.expect("put");
        memory_inputs.push(LogInput {
            log_id: id.clone(),
            location: volume.location(&id),
            bytes: bytes.len() as u64,
            sha256: None,
        });
    }
    memory_inputs.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    let engine = engine.with_store(volume.url().clone(), store);
    let (local_memory, remote_memory) =
        both_ways(&engine, volume.url().clone(), memory_inputs).await;
    assert_eq!(
        remote_memory, local_memory,
        "memory:// volume: Ballista equals local"
    );
    assert_eq!(local_memory, local, "the store does not change results");
}

/// A child process killed when dropped.
struct Process(Child, PathBuf);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `fap-warehouse <args>` with its stderr in `log`.
fn spawn(args: &[&str], log: PathBuf) -> Process {
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    Process(child, log)
}

fn wait_for(log: &Path, text: &str, within: Duration) {
    let started = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            started.elapsed() < within,
            "{} never said {text:?}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and two executors (one task slot each) on 127.0.0.1.
struct Cluster {
    scheduler: String,
    executors: Vec<Process>,
    _scheduler: Process,
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let port = crate::common::free_port();
        let scheduler = format!("127.0.0.1:{port}");
        let sched = spawn(
            &[
                "scheduler",
                "--bind",
                &scheduler,
                "--executor-timeout-seconds",
                "10",
            ],
            dir.join("scheduler.log"),
        );
        wait_for(&sched.1, "listening on", Duration::from_secs(30));
        let executors: Vec<Process> = (0..2)
            .map(|i| {
                let (flight, grpc) = (
                    format!("127.0.0.1:{}", crate::common::free_port()),
                    format!("127.0.0.1:{}", crate::common::free_port()),
                );
                let work = dir.join(format!("executor-{i}"));
                spawn(
                    &[
                        "executor",
                        "--scheduler",
                        &scheduler,
                        "--bind",
                        &flight,
                        "--grpc-bind",
                        &grpc,
                        "--concurrent-tasks",
                        "1",
                        "--work-dir",
                        work.to_str().expect("utf8"),
                    ],
                    dir.join(format!("executor-{i}.log")),
                )
            })
            .collect();
        for e in &executors {
            wait_for(
                &e.1,
                "Executor registration succeed",
                Duration::from_secs(30),
            );
        }
        Self {
            scheduler,
            executors,
            _scheduler: sched,
        }
    }
}

/// A warehouse of `users` × `per_user` generated logs (plus a broken one).
fn warehouse(root: &Path, users: usize, per_user: usize, size: usize) {
    for u in 0..users {
        let logs = fap_warehouse::cli::gen_logs(
            &root.join(format!("in-{u}")),
            per_user,
            size,
            100 + u as u64,
        )
        .expect("logs");
        let mut args: Vec<String> = vec![
            "--warehouse".into(),
            root.join("wh").to_string_lossy().into_owned(),
            "ingest".into(),
            "--user".into(),
            format!("user{u}@example.com"),
        ];
        args.extend(logs.iter().map(|p| p.to_string_lossy().into_owned()));
        if u == 0 {
            let broken = root.join("broken.csv");
            std::fs::write(&broken, "Date;Time;Speed\nnot;a;log\n").expect("broken");
            args.push(broken.to_string_lossy().into_owned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run_bin(&refs, None);
        assert_eq!(code, 0, "{err}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs the job on warehouse `wh`, returning (exit code, stdout, stderr).
fn run_job(wh: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["--warehouse", wh.to_str().expect("utf8"), "run"];
    args.extend_from_slice(extra);
    run_bin(&args, None)
}

/// Every row of a snapshot table, sorted by its key columns.
fn table(snapshot: &Path, name: &str) -> RecordBatch {
    let mut batches = Vec::new();
    let mut schema = None;
    let mut files: Vec<PathBuf> = std::fs::read_dir(snapshot.join(name))
        .expect("table folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).expect("file"))
                .expect("parquet")
                .build()
                .expect("reader");
        schema.get_or_insert(datafusion::arrow::array::RecordBatchReader::schema(&reader));
        batches.extend(reader.map(|b| b.expect("batch")));
    }
    let schema = schema.expect("a file");
    let all = concat_batches(&schema, &batches).expect("concat");
    // A stable order: the row's text form, whatever the bucket files.
    let keys: Vec<String> = (0..all.num_rows())
        .map(|row| {
            all.columns()
                .iter()
                .map(|c| {
                    datafusion::arrow::util::display::array_value_to_string(c, row).expect("cell")
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    let order = sort_to_indices(
        &datafusion::arrow::array::StringArray::from(keys),
        None,
        None,
    )
    .expect("sort");
    take_record_batch(&all, &order).expect("take")
}

fn latest(wh: &Path) -> PathBuf {
    let id = std::fs::read_to_string(wh.join("snapshots/latest")).expect("latest");
    wh.join("snapshots").join(id.trim())
}

fn outbox(wh: &Path) -> String {
    let dir = wh.join("outbox");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("outbox")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    std::fs::read_to_string(files.last().expect("an outbox")).expect("outbox file")
}

#[test]
fn a_cluster_run_writes_what_a_local_run_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::start(dir.path());
    let engine = format!("ballista://{}", cluster.scheduler);

    // An unreachable scheduler: a clear error, exit 1, nothing written.
    let small = dir.path().join("small");
    warehouse(&small, 1, 2, 20_000);
    let before: Vec<_> = std::fs::read_dir(small.join("wh"))
        .expect("wh")
        .map(|e| e.expect("e").file_name())
        .collect();
    let (code, _, err) = run_job(
        &small.join("wh"),
        &[
            "--engine",
            &format!("ballista://127.0.0.1:{}", crate::common::free_port()),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the Ballista scheduler"), "{err}");
    let after: Vec<_> = std::fs::read_dir(small.join("wh"))
        .expect("wh")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(before, after, "nothing written");

    // The same warehouse twice: run locally and on the cluster.
    let data = dir.path().join("data");
    warehouse(&data, 3, 8, 40_000);
    let (local, remote) = (data.join("wh"), data.join("wh-remote"));
    copy_dir(&local, &remote);
    let (code, out, err) = run_job(&local, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 failed"), "{out}");
    let (code, out, err) = run_job(&remote, &["--engine", &engine, "--partitions", "4"]);
    assert_eq!(code, 0, "{err}\n{out}");
    for name in [
        "analysis",
        "average",
        "fuel_by_speed_band",
        "average_fuel_by_speed_band",
    ] {
        assert_eq!(
            table(&latest(&remote), name),
            table(&latest(&local), name),
            "table {name}"
        );
    }
    assert_eq!(outbox(&remote), outbox(&local), "the same messages");
    let tasks: Vec<usize> = cluster
        .executors
        .iter()
        .map(|e| {
            std::fs::read_to_string(&e.1)
                .unwrap_or_default()
                .matches("Execute task")
                .count()
        })
        .collect();
    assert!(
        tasks.iter().all(|&n| n > 0),
        "both executors worked: {tasks:?}"
    );
}

#[test]
fn an_executor_killed_mid_run_leaves_no_partial_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(dir.path());
    let engine = format!("ballista://{}", cluster.scheduler);
    let data = dir.path().join("data");
    warehouse(&data, 2, 60, 300_000);
    let (local, remote) = (data.join("wh"), data.join("wh-remote"));
    copy_dir(&local, &remote);
    let (code, _, err) = run_job(&local, &[]);
    assert_eq!(code, 0, "{err}");

    let run = Command::new(env!("CARGO_BIN_EXE_fap-warehouse"))
        .args([
            "--warehouse",
            remote.to_str().expect("utf8"),
            "--partitions",
            "6",
            "run",
            "--engine",
            &engine,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    // Kill the first executor that starts a task, while it runs it.
    let started = Instant::now();
    let victim = loop {
        let busy = cluster.executors.iter().position(|e| {
            std::fs::read_to_string(&e.1)
                .unwrap_or_default()
                .contains("Execute task")
        });
        if let Some(i) = busy {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no task started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed = cluster.executors.remove(victim);
    drop(killed);
    let output = run.wait_with_output().expect("run ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Either Ballista re-ran the lost tasks elsewhere and the snapshot is
    // whole, or the run failed and published and delivered nothing.
    if output.status.success() {
        for name in ["analysis", "average"] {
            assert_eq!(
                table(&latest(&remote), name),
                table(&latest(&local), name),
                "table {name}"
            );
        }
        assert_eq!(outbox(&remote), outbox(&local));
    } else {
        assert!(
            !remote.join("snapshots/latest").exists(),
            "{stdout}{stderr}"
        );
        assert!(!remote.join("outbox").exists(), "nothing delivered");
    }
    for entry in std::fs::read_dir(remote.join("snapshots"))
        .into_iter()
        .flatten()
    {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "latest" || name.starts_with('.') {
            continue;
        }
        assert!(
            entry.path().join("manifest.json").is_file(),
            "partial snapshot {name}"
        );
    }
}
