//! Replays the stored fuzz inputs of this crate's decoders (see fuzz/README.md).

#[path = "../../../fuzz/src/agent_line.rs"]
mod agent_line;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[path = "../../../fuzz/src/wire_resources.rs"]
mod wire_resources;

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn agent_line_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "agent_line", agent_line::check) > 0,
        "no stored inputs for agent_line"
    );
}

#[test]
fn wire_resources_inputs_replay() {
    assert!(
        replay::replay(&fuzz_dir(), "wire_resources", wire_resources::check) > 0,
        "no stored inputs for wire_resources"
    );
}
