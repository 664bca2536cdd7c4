//! Contract §6 (where the reference fails) and hostile input: every case is a
//! log the test builds itself. Logs are analysed together in one plan, so a
//! broken log is also shown not to disturb the others.

use std::path::Path;

use fap_warehouse::analysis::engine::Engine;
use fap_warehouse::analysis::message::analysis_result;
use fap_warehouse::analysis::models::Models;
use fap_warehouse::generate::{generate_log, spec_for};
use serde_json::Value;

/// Writes each `(id, bytes)` as `<id>.csv` and analyses all in one plan.
async fn analyse(logs: &[(&str, Vec<u8>)]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths: Vec<std::path::PathBuf> = logs
        .iter()
        .map(|(id, bytes)| {
            let path = dir.path().join(format!("{id}.csv"));
            std::fs::write(&path, bytes).expect("write log");
            path
        })
        .collect();
    let result = Engine::new(Models::embedded())
        .analyse_files(&paths)
        .await
        .expect("the plan never fails on log content");
    let messages: Vec<Value> = (0..result.batch.num_rows())
        .map(|row| analysis_result(&result.batch, row))
        .collect();
    // Results come back in id order, one per input.
    let mut ids: Vec<&str> = logs.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let got: Vec<&str> = messages
        .iter()
        .map(|m| m["analysisId"].as_str().expect("id"))
        .collect();
    assert_eq!(got, ids);
    for m in &messages {
        check_wire_rules(m);
    }
    messages
}

async fn analyse_one(bytes: Vec<u8>) -> Value {
    analyse(&[("log", bytes)]).await.remove(0)
}

/// What every `analysis.result` must satisfy (messages.md).
fn check_wire_rules(m: &Value) {
    let status = m["status"].as_str().expect("status");
    assert!(status == "Success" || status == "Failed", "{m}");
    let message = m["message"].as_str().expect("message is text");
    assert!(
        !message.is_empty() && message.chars().count() <= 255,
        "{message}"
    );
    assert!(m.get("data").is_none() && m.get("pattern").is_none());
    if status == "Failed" {
        assert_eq!(m["analysis"], serde_json::json!({}));
        assert_eq!(m["fapRegen"], false);
    }
    // serde_json cannot hold NaN/Infinity: finiteness is checked by printing.
    let text = m.to_string();
    assert!(!text.contains("NaN") && !text.contains("Infinity"));
}

/// A small CSV log in the logger's format: `;` separated, trailing `;`.
fn csv(header: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let mut out = header.join(";") + ";\n";
    for row in rows {
        out += &(row.join(";") + ";\n");
    }
    out.into_bytes()
}

const HEADER: [&str; 7] = [
    "Date", "Time", "Revs", "Speed", "InjFlow", "REGEN", "FAPtemp",
];

/// `n` one-second rows driving at `speed` with `regen`.
fn drive(n: usize, speed: f64, regen: u8) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![
                "2025.03.01".into(),
                format!("10:{:02}:{:02}.0", i / 60, i % 60),
                "1500".into(),
                format!("{speed}"),
                "20".into(),
                regen.to_string(),
                "300".into(),
            ]
        })
        .collect()
}

fn message_of(m: &Value) -> String {
    m["message"].as_str().unwrap_or_default().to_lowercase()
}

#[tokio::test]
async fn logs_without_usable_rows_fail_and_say_why() {
    let one_row = drive(1, 30.0, 0);
    let mut bad_times = drive(5, 30.0, 0);
    for row in &mut bad_times {
        row[1] = row[1].trim_end_matches(".0").to_string(); // no fraction: invalid
    }
    let same_time: Vec<Vec<String>> = (0..4).map(|_| drive(1, 30.0, 0).remove(0)).collect();
    // Time advances, but most rows repeat the one before: no typical step.
    let mostly_same_time: Vec<Vec<String>> = drive(3, 30.0, 0)
        .into_iter()
        .flat_map(|row| [row.clone(), row.clone(), row])
        .collect();
    let results = analyse(&[
        ("a_empty", Vec::new()),
        ("b_header_only", csv(&HEADER, &[])),
        ("c_no_timestamp", csv(&HEADER, &bad_times)),
        ("d_single_row", csv(&HEADER, &one_row)),
        ("e_same_time", csv(&HEADER, &same_time)),
        ("e_mostly_same_time", csv(&HEADER, &mostly_same_time)),
        ("f_good", csv(&HEADER, &drive(30, 30.0, 0))),
    ])
    .await;
    let expect = [
        ("a_empty", "empty"),
        ("b_header_only", "no data rows"),
        ("c_no_timestamp", "valid date and time"),
        ("d_single_row", "only one row"),
        (
            "e_mostly_same_time",
            "repeat the date and time of the row before",
        ),
        ("e_same_time", "repeat the date and time of the row before"),
    ];
    for (m, (id, phrase)) in results.iter().zip(expect) {
        assert_eq!(m["analysisId"], id);
        assert_eq!(m["status"], "Failed", "{m}");
        assert!(message_of(m).contains(phrase), "{id}: {}", m["message"]);
        assert_eq!(m["logDate"], Value::Null);
        assert_eq!(m["distance"], Value::Null);
    }
    assert_eq!(results[6]["status"], "Success");
}

#[tokio::test]
async fn a_missing_date_or_time_column_is_named() {
    let rows: Vec<Vec<String>> = drive(10, 30.0, 0)
        .into_iter()
        .map(|r| r[1..].to_vec())
        .collect();
    let m = analyse_one(csv(&HEADER[1..], &rows)).await;
    assert_eq!(m["status"], "Failed");
    assert!(
        m["message"].as_str().unwrap_or_default().contains("Date"),
        "{m}"
    );

    let rows: Vec<Vec<String>> = drive(10, 30.0, 0)
        .into_iter()
        .map(|mut r| {
            r.remove(1);
            r
        })
        .collect();
    let header: Vec<&str> = HEADER.iter().copied().filter(|h| *h != "Time").collect();
    let m = analyse_one(csv(&header, &rows)).await;
    assert_eq!(m["status"], "Failed");
    assert!(
        m["message"].as_str().unwrap_or_default().contains("Time"),
        "{m}"
    );
}

#[tokio::test]
async fn a_utf8_bom_is_ignored() {
    let plain = csv(&HEADER, &drive(60, 40.0, 0));
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&plain);
    let results = analyse(&[("bom", bom), ("plain", plain)]).await;
    assert_eq!(results[0]["status"], "Success");
    assert_eq!(results[0]["analysis"], results[1]["analysis"]);
}

/// The reference's reader skips blank lines, before the header too, and
/// takes `\r` alone as a line end (old Mac files).
#[tokio::test]
async fn blank_lines_before_the_header_and_mac_line_ends_are_read() {
    let plain = csv(&HEADER, &drive(60, 40.0, 0));
    let with = |prefix: &[u8]| [prefix, plain.as_slice()].concat();
    let mac: Vec<u8> = plain
        .iter()
        .map(|&b| if b == b'\n' { b'\r' } else { b })
        .collect();
    let results = analyse(&[
        ("blank_first", with(b"\n")),
        ("blanks_and_spaces_first", with(b" \r\n\t\n\n")),
        ("bom_then_blank", with(b"\xEF\xBB\xBF\r\n")),
        ("mac", mac),
        ("plain", plain.clone()),
    ])
    .await;
    let plain = &results[4];
    assert_eq!(plain["status"], "Success", "{plain}");
    for m in &results[..4] {
        assert_eq!(m["status"], "Success", "{m}");
        assert_eq!(m["analysis"], plain["analysis"], "{}", m["analysisId"]);
    }
}

/// Whatever is wrong with the first line, the message says what it is.
#[tokio::test]
async fn a_log_that_has_no_header_is_told_why() {
    let separated = |separator: &str| {
        let mut text = HEADER.join(separator) + "\n";
        for row in drive(10, 30.0, 0) {
            text += &(row.join(separator) + "\n");
        }
        text.into_bytes()
    };
    let results = analyse(&[
        ("a_bom_only", b"\xEF\xBB\xBF".to_vec()),
        ("b_blank_only", b"\n \r\n\n".to_vec()),
        ("c_commas", separated(",")),
        ("d_tabs", separated("\t")),
        ("e_no_columns", separated("|")),
    ])
    .await;
    let expect = [
        ("a_bom_only", "only a text-encoding mark"),
        ("b_blank_only", "only blank lines"),
        ("c_commas", "separated by commas"),
        ("d_tabs", "separated by tabs"),
        ("e_no_columns", "no date and no time column"),
    ];
    for (m, (id, phrase)) in results.iter().zip(expect) {
        assert_eq!(m["analysisId"], id);
        assert_eq!(m["status"], "Failed", "{m}");
        assert!(message_of(m).contains(phrase), "{id}: {}", m["message"]);
    }
}

#[tokio::test]
async fn no_speed_or_no_revs_column_succeeds_with_those_metrics_null() {
    let drop_column = |name: &str| {
        let keep: Vec<usize> = (0..HEADER.len()).filter(|&i| HEADER[i] != name).collect();
        let header: Vec<&str> = keep.iter().map(|&i| HEADER[i]).collect();
        let rows: Vec<Vec<String>> = drive(60, 40.0, 0)
            .into_iter()
            .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
            .collect();
        csv(&header, &rows)
    };
    let results = analyse(&[
        ("no_revs", drop_column("Revs")),
        ("no_speed", drop_column("Speed")),
    ])
    .await;
    let (no_revs, no_speed) = (&results[0], &results[1]);
    for m in &results {
        assert_eq!(m["status"], "Success", "{m}");
        assert_eq!(
            m["analysis"]["overall"]["duration"]["overall_sec"],
            Value::Null
        );
        assert_eq!(
            m["analysis"]["fuelConsumption"]["overall"]["total_l"],
            Value::Null
        );
    }
    assert_eq!(no_speed["analysis"]["overall"]["distance_km"], Value::Null);
    assert_eq!(no_speed["distance"], Value::Null);
    assert_eq!(
        no_speed["analysis"]["driving"]["speed"]["max_kmh"],
        Value::Null
    );
    assert_eq!(no_revs["analysis"]["overall"]["distance_km"], 0.66);
    assert_eq!(no_revs["analysis"]["driving"]["revs"]["max"], Value::Null);
}

#[tokio::test]
async fn no_fuel_data_with_distance_gives_null_fuel() {
    let mut rows = drive(60, 40.0, 0);
    for row in &mut rows {
        row[4] = String::new();
    }
    let m = analyse_one(csv(&HEADER, &rows)).await;
    assert_eq!(m["status"], "Success");
    assert_eq!(m["distance"], 0.66);
    let fuel = &m["analysis"]["fuelConsumption"];
    assert_eq!(fuel["overall"]["total_l"], Value::Null);
    assert_eq!(fuel["overall"]["avg_l100km"], Value::Null);
    assert_eq!(fuel["bySpeedRange"]["35-45_l100km"], Value::Null);
    assert_eq!(fuel["bySpeedRange"]["_35-45_km"], 0.66);
}

#[tokio::test]
async fn regeneration_edge_cases_give_null_not_infinity() {
    // Every row regenerating: no REGEN = 0 row at all.
    let all_regen = csv(&HEADER, &drive(60, 40.0, 1));
    // REGEN = 0 rows standing still: 0 km outside the regeneration.
    let mut standing = drive(30, 0.0, 0);
    let moving = drive(60, 40.0, 1);
    standing.extend(moving.into_iter().skip(30));
    let results = analyse(&[
        ("all_regen", all_regen),
        ("standing", csv(&HEADER, &standing)),
    ])
    .await;
    for m in &results {
        assert_eq!(m["status"], "Success", "{m}");
        let regen = &m["analysis"]["fapRegen"];
        assert!(regen.is_object(), "{m}");
        assert_eq!(m["fapRegen"], true);
        assert_eq!(
            regen["fuelConsumption"]["nonRegen_l100km"],
            Value::Null,
            "{m}"
        );
        assert!(
            regen["fuelConsumption"]["regen_l100km"]
                .as_f64()
                .is_some_and(f64::is_finite)
        );
    }
    assert_eq!(results[0]["analysis"]["fapRegen"]["duration_sec"], 59);
}

#[tokio::test]
async fn infinite_and_garbage_cells_are_null() {
    let mut rows = drive(60, 40.0, 0);
    for (i, row) in rows.iter_mut().enumerate() {
        row[6] = match i % 6 {
            0 => "inf".into(),
            1 => "-Infinity".into(),
            2 => "N/A".into(),
            3 => "1,5".into(),
            4 => "0x10".into(),
            _ => " +3e2 ".into(),
        };
    }
    rows[7][2] = "1e19".into(); // Revs beyond any integer: a null metric, not a failed plan
    let m = analyse_one(csv(&HEADER, &rows)).await;
    assert_eq!(m["status"], "Success", "{m}");
    assert_eq!(m["analysis"]["driving"]["revs"]["max"], Value::Null);
    let temp = &m["analysis"]["fap"]["temp"];
    assert_eq!(temp["max_c"], 300);
    assert_eq!(temp["min_c"], 300);
}

#[tokio::test]
async fn messy_but_readable_logs_give_the_same_analysis() {
    let spec = spec_for(7, 1, 60_000);
    let clean = generate_log(&spec);
    let text = String::from_utf8(clean.clone()).expect("generated logs are ASCII");
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split(';').collect();

    // CRLF line ends.
    let crlf = text.replace('\n', "\r\n").into_bytes();
    // Columns in reverse order (another engine profile).
    let reversed: String = lines
        .iter()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(';').collect();
            cells.pop(); // the empty cell after the trailing `;`
            cells.reverse();
            cells.join(";") + ";\n"
        })
        .collect();
    // An extra unknown column, latin1 bytes in it, and the header repeated mid-file.
    let mut extra = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let cell: &[u8] = if i == 0 { b"Temp\xb0C" } else { b"5\xb0" };
        extra.extend_from_slice(cell);
        extra.push(b';');
        extra.extend_from_slice(line.as_bytes());
        extra.push(b'\n');
        if i == lines.len() / 2 {
            extra.extend_from_slice(b"Temp\xb0C;");
            extra.extend_from_slice(lines[0].as_bytes());
            extra.push(b'\n');
        }
    }
    assert!(header.len() > 10);
    let results = analyse(&[
        ("clean", clean),
        ("crlf", crlf),
        ("extra", extra),
        ("reversed", reversed.into_bytes()),
    ])
    .await;
    assert_eq!(results[0]["status"], "Success", "{}", results[0]);
    for m in &results[1..] {
        assert_eq!(m["status"], "Success", "{m}");
        assert_eq!(m["analysis"], results[0]["analysis"], "{}", m["analysisId"]);
    }
}

#[tokio::test]
async fn ragged_rows_lose_only_their_missing_cells() {
    let mut rows = drive(60, 40.0, 0);
    rows[10].truncate(4); // fewer fields: InjFlow, REGEN, FAPtemp unknown
    rows[11].extend(["1".to_string(), "2".to_string()]); // more fields than the header
    let m = analyse_one(csv(&HEADER, &rows)).await;
    assert_eq!(m["status"], "Success", "{m}");
    assert_eq!(m["analysis"]["overall"]["duration"]["overall_sec"], 59);
}

/// A small deterministic PRNG so failures can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn arbitrary_bytes_never_panic_and_never_touch_other_logs() {
    let good = generate_log(&spec_for(3, 0, 80_000));
    let alone = analyse(&[("good", good.clone())]).await.remove(0);
    assert_eq!(alone["status"], "Success");

    let mut logs: Vec<(String, Vec<u8>)> = vec![("good".into(), good.clone())];
    for i in 0..20u64 {
        logs.push((
            format!("noise{i:02}"),
            noise(i, 1 + (i as usize * 997) % 20_000),
        ));
    }
    for (i, cut) in [1usize, 17, 200, 5_000, 33_333].into_iter().enumerate() {
        logs.push((
            format!("truncated{i}"),
            good[..cut.min(good.len())].to_vec(),
        ));
    }
    let mut junk = good.clone();
    for (i, b) in junk.iter_mut().enumerate().skip(500) {
        if i % 97 == 0 {
            *b = 0;
        }
    }
    logs.push(("nul_bytes".into(), junk));
    logs.push((
        "binary_header".into(),
        b"\x00\x01\x02PK\x03\x04".repeat(300),
    ));

    let borrowed: Vec<(&str, Vec<u8>)> = logs
        .iter()
        .map(|(id, b)| (id.as_str(), b.clone()))
        .collect();
    let results = analyse(&borrowed).await;
    let good_now = results
        .iter()
        .find(|m| m["analysisId"] == "good")
        .expect("good");
    assert_eq!(
        good_now, &alone,
        "a broken log changed another log's result"
    );
    for m in &results {
        let id = m["analysisId"].as_str().unwrap_or_default();
        if id.starts_with("noise") || id == "binary_header" || id == "truncated0" {
            assert_eq!(m["status"], "Failed", "{m}");
        }
    }
}

#[tokio::test]
async fn averages_hold_only_finite_numbers() {
    let huge = serde_json::json!({
        "overall": {"distance_km": 1e308, "duration": {"driving_sec": 1e308, "engineOn_sec": 1e308, "idle_sec": 1e308}},
        "driving": {"speed": {"avg_kmh": 1e308}, "revs": {"avg": 1e308}},
        "engine": {"coolantTemp": {"avg_c": 1e308}},
    });
    let request = serde_json::json!({"pattern": "average.request", "data": {
        "userId": "u", "type": "OVERALL", "analysisSha": "s",
        "analysis": [huge.clone(), huge, {}, null]}});
    let engine = Engine::new(Models::embedded());
    let averager = fap_warehouse::analysis::average::Averager::for_requests(&engine)
        .await
        .expect("planned");
    let result = fap_warehouse::analysis::average::answer(&averager, &request)
        .await
        .expect("answered");
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let text = result.to_string();
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    assert_eq!(
        result["average"]["overall"]["distance_km"],
        Value::Null,
        "{result}"
    );
}

/// A request that cannot be averaged is FAILED and says why: a wrong
/// average sent as a success would be stored as the driver's.
#[tokio::test]
async fn an_average_request_that_cannot_be_averaged_fails_and_says_why() {
    use serde_json::json;
    let good = json!({"overall": {"distance_km": 12.5}});
    let request = |data: Value| json!({"pattern": "average.request", "data": data});
    let cases = [
        (
            json!({"userId": "u", "type": "OVERALL", "analysis": [good, {"overall": {"distance_km": "12.5"}}]}),
            "a text at overall.distance_km",
        ),
        (
            json!({"userId": "u", "type": "OVERALL", "analysis": [good, {"driving": {"speed": 4}}]}),
            "a number at driving.speed",
        ),
        (
            json!({"userId": "u", "type": "OVERALL", "analysis": [good, 7]}),
            "analysis 2 of 2 is a number, not an analysis object",
        ),
        (json!({"type": "OVERALL", "analysis": [good]}), "no userid"),
        (
            json!({"userId": "u", "type": "WEEKLY", "analysis": [good]}),
            "expected overall, yearly or monthly",
        ),
    ];
    let engine = Engine::new(Models::embedded());
    let averager = fap_warehouse::analysis::average::Averager::for_requests(&engine)
        .await
        .expect("planned");
    let payloads: Vec<Value> = cases
        .iter()
        .map(|(data, _)| request(data.clone()))
        .collect();
    let results = fap_warehouse::analysis::average::answer_all(&averager, &payloads)
        .await
        .expect("answered");
    for (result, (_, phrase)) in results.iter().zip(&cases) {
        assert_eq!(result["status"], "FAILED", "{result}");
        assert_eq!(result["average"], json!({}));
        assert!(message_of(result).contains(phrase), "{phrase}: {result}");
    }
    // The same analyses, well formed, still average.
    let fine = request(json!({"userId": "u", "type": "OVERALL", "analysis": [good, {}, null]}));
    let result = fap_warehouse::analysis::average::answer(&averager, &fine)
        .await
        .expect("answered");
    assert_eq!(result["status"], "SUCCESS", "{result}");
}

#[test]
fn generated_logs_are_written_where_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = fap_warehouse::cli::gen_logs(dir.path(), 3, 20_000, 9).expect("generated");
    assert_eq!(paths.len(), 3);
    for p in &paths {
        assert!(Path::new(p).metadata().expect("exists").len() > 10_000);
    }
}

/// A float sum depends on its order: 1e16 + 1 - 1e16 is 0 or 2 one way and
/// 1 the other. The same members, given in another order (as an
/// incremental run and a full run give them), must average the same.
#[tokio::test]
async fn an_average_does_not_depend_on_the_order_of_its_members() {
    use fap_warehouse::analysis::average::{
        Averager, GroupKey, average_objects, members_from_json,
    };
    let object = |km: f64| serde_json::json!({"overall": {"distance_km": km, "date": {"date": "2026-03-04"}}});
    let (a, b, c) = (object(1e16), object(1.0), object(-1e16));
    let engine = Engine::new(Models::embedded());
    let averager = Averager::for_requests(&engine).await.expect("planned");
    let key = GroupKey::all_for("u", Some("2026-03-04")).remove(0);
    let mut distances = Vec::new();
    for order in [
        [("a", &a), ("b", &b), ("c", &c)],
        [("c", &c), ("a", &a), ("b", &b)],
        [("a", &a), ("c", &c), ("b", &b)],
    ] {
        let members: Vec<(GroupKey, String, &Value)> = order
            .iter()
            .map(|(id, object)| (key.clone(), id.to_string(), *object))
            .collect();
        let (rows, bands) = members_from_json(
            &members,
            averager.members_schema(),
            averager.member_bands_schema(),
        )
        .expect("members");
        let (averages, band_rows) = averager
            .run(vec![rows], vec![bands])
            .await
            .expect("averaged");
        let objects = average_objects(&averages, &band_rows).expect("objects");
        let average: Value = serde_json::from_str(&objects[0]).expect("json");
        distances.push(average["overall"]["distance_km"].clone());
    }
    assert!(distances[0].is_number(), "{distances:?}");
    assert!(
        distances.iter().all(|d| d == &distances[0]),
        "{distances:?}"
    );
}
