//! Replays the stored fuzz inputs of this crate's decoders (see fuzz/README.md).

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[path = "../../../fuzz/src/search_request.rs"]
mod search_request;

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn search_request_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "search_request", search_request::check) > 0,
        "no stored inputs for search_request"
    );
}
