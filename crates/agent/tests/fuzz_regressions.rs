//! Replays the stored fuzz inputs of this crate's decoders (see fuzz/README.md).

#[path = "../../../fuzz/src/file_source.rs"]
mod file_source;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[path = "../../../fuzz/src/spool_recover.rs"]
mod spool_recover;
#[path = "../../../fuzz/src/spool_segment.rs"]
mod spool_segment;

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn spool_segment_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "spool_segment", spool_segment::check) > 0,
        "no stored inputs for spool_segment"
    );
}

#[test]
fn file_source_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "file_source", file_source::check) > 0,
        "no stored inputs for file_source"
    );
}

#[test]
fn spool_recover_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "spool_recover", spool_recover::check) > 0,
        "no stored inputs for spool_recover"
    );
}
