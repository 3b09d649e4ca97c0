//! Replays the stored fuzz inputs of this crate's decoders (see fuzz/README.md).

#[path = "../../../fuzz/src/rbac_objects.rs"]
mod rbac_objects;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn rbac_objects_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "rbac_objects", rbac_objects::check) > 0,
        "no stored inputs for rbac_objects"
    );
}
