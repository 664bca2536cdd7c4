//! Parity with the previous analyser on real logs: every log's message and
//! every group's average must equal what it produced (numbers within 1e-9,
//! keys, key order and nulls exact).

use crate::common::{json_diff, read_json, real_fixtures, run_bin};
use serde_json::{Value, json};

#[test]
fn analyze_reproduces_every_real_log() {
    let Some(dir) = real_fixtures() else { return };
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("logs"))
        .expect("logs folder")
        .map(|e| e.expect("entry").path())
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no real logs found");
    let mut failures = Vec::new();
    for log in &logs {
        let stem = log.file_stem().and_then(|s| s.to_str()).expect("stem");
        let (code, stdout, stderr) = run_bin(&["analyze", log.to_str().expect("utf8 path")], None);
        assert_eq!(code, 0, "{stem}: {stderr}");
        let got: Value = serde_json::from_str(&stdout).expect("analyze prints JSON");
        let want = read_json(&dir.join(format!("expected/{stem}.message.json")));
        if let Some(diff) = json_diff(stem, &got, &want) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "differences:\n{}", failures.join("\n"));
}

#[test]
fn average_reproduces_every_real_group() {
    let Some(dir) = real_fixtures() else { return };
    let groups = read_json(&dir.join("groups.json"));
    let groups = groups.as_object().expect("groups.json is an object");
    assert!(!groups.is_empty());
    for (group, members) in groups {
        let analyses: Vec<Value> = members
            .as_array()
            .expect("member list")
            .iter()
            .map(|stem| {
                let stem = stem.as_str().expect("stem");
                read_json(&dir.join(format!("expected/{stem}.analysis.json")))
            })
            .collect();
        let sha = "ab".repeat(32);
        let request = json!({"pattern": "average.request", "data": {
            "userId": "7d3f1c8e-0000-4000-8000-000000000001", "type": "OVERALL",
            "analysisSha": sha, "analysis": analyses}});
        let (code, stdout, stderr) = run_bin(&["average", "-"], Some(&request.to_string()));
        assert_eq!(code, 0, "{group}: {stderr}");
        let got: Value = serde_json::from_str(&stdout).expect("average prints JSON");
        assert_eq!(got["status"], "SUCCESS", "{group}: {got}");
        assert_eq!(got["analysisSha"], sha.as_str());
        assert_eq!(got["userId"], "7d3f1c8e-0000-4000-8000-000000000001");
        assert_eq!(got["year"], Value::Null);
        assert_eq!(got["month"], Value::Null);
        let want = read_json(&dir.join(format!("expected/{group}.average.json")));
        if let Some(diff) = json_diff(group, &got["average"], &want) {
            panic!("{diff}");
        }
    }
}
