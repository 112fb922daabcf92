//! Replays the committed fuzz corpora (fuzz/corpus/<target>/*) through the
//! same harnesses the fuzzers run, so every input that ever found a bug, and
//! every seed, stays a regression test in CI.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            panic!("{} failed", path.display());
        }
        n += 1;
    }
    println!("{target}: {n} inputs");
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn record_decode_corpus() {
    replay("record_decode", directwal::fuzzing::record_decode);
}

#[test]
fn segment_scan_corpus() {
    replay("segment_scan", directwal::fuzzing::segment_file);
}

#[test]
fn operations_corpus() {
    replay("operations", directwal::fuzzing::operations);
}

#[test]
fn encrypted_segment_corpus() {
    replay("encrypted_segment", directwal::fuzzing::encrypted_segment);
}
