use super::*;
use chrono::TimeZone;

fn job(schedule: &str) -> Job {
    Job {
        spec: JobSpec {
            name: "t".into(),
            schedule: schedule.into(),
            force: false,
            full: false,
        },
        schedule: parse_schedule(schedule).expect("valid"),
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("a time")
}

#[test]
fn cron_fires_when_it_should() {
    let nightly = job("30 2 * * *");
    assert_eq!(
        nightly.next_after(at(2025, 2, 3, 0, 0)),
        Some(at(2025, 2, 3, 2, 30))
    );
    assert_eq!(
        nightly.next_after(at(2025, 2, 3, 2, 30)),
        Some(at(2025, 2, 4, 2, 30))
    );
    // 2025-02-07 was a Friday; the weekend is skipped.
    let weekdays = job("0 6 * * 1-5");
    assert_eq!(
        weekdays.next_after(at(2025, 2, 7, 6, 0)),
        Some(at(2025, 2, 10, 6, 0))
    );
    assert_eq!(
        job("*/15 * * * *").next_after(at(2025, 2, 3, 0, 0)),
        Some(at(2025, 2, 3, 0, 15))
    );
    assert!(parse_schedule("61 * * * *").is_err());
    assert!(parse_schedule("* * *").is_err());
    assert!(
        parse_schedule("0 0 * * * *").is_err(),
        "seconds are not a cron field here"
    );
    // Sunday is 0 and 7.
    assert_eq!(
        job("0 0 * * 7").next_after(at(2025, 2, 3, 0, 0)),
        Some(at(2025, 2, 9, 0, 0))
    );
}

/// cron fires when the day of the month OR the day of the week matches.
#[test]
fn regression_day_of_month_or_day_of_week() {
    // The 1st of the month, or any Monday: 2025-02-01 (Sat) then 02-03 (Mon).
    let either = job("0 0 1 * 1");
    assert_eq!(
        either.next_after(at(2025, 1, 31, 12, 0)),
        Some(at(2025, 2, 1, 0, 0))
    );
    assert_eq!(
        either.next_after(at(2025, 2, 1, 0, 0)),
        Some(at(2025, 2, 3, 0, 0))
    );
}

#[test]
fn regression_an_impossible_schedule_is_refused_at_load() {
    let err = parse_schedule("0 0 31 2 *").expect_err("never fires");
    assert!(err.contains("never fires"), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"leap\"\nschedule = \"0 0 31 2 *\"\n",
    )
    .expect("write");
    let err = load_jobs(dir.path()).expect_err("refused").to_string();
    assert!(
        err.contains("\"leap\"") && err.contains("never fires"),
        "{err}"
    );
}

#[test]
fn the_shipped_jobs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
    let jobs = load_jobs(&dir).expect("jobs/ parses");
    assert!(jobs.iter().any(|job| job.spec.name == "nightly"));
}
