use super::*;

#[test]
fn a_comment_changes_the_version_and_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Models::embedded();
    let original = embedded.get("log_analysis").expect("model").query.clone();
    std::fs::write(
        dir.path().join("log_analysis.sql"),
        format!("{original}\n-- a note\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("group_average.sql"),
        &embedded.get("group_average").expect("model").query,
    )
    .expect("write");
    let edited = Models::from_dir(dir.path()).expect("models");
    assert_ne!(edited.version(), embedded.version());
    assert_eq!(
        edited.overridden(),
        ["log_analysis"],
        "an identical copy is no override"
    );
    assert_eq!(Models::embedded().version(), embedded.version());
}
