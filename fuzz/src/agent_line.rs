//! What the server does with every line an agent ships: `LogLine::parse`, then
//! `logs::validate` and, when the line came with the record's own text, `text_with_cluster`.

use cattery_api::agent_protocol::LogLine;
use cattery_api::logs;

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let Ok((line, text)) = LogLine::parse(data) else {
        return;
    };
    // The record's text, when given, is the record.
    if let Some(text) = text {
        let parsed: serde_json::Value =
            serde_json::from_slice(text).expect("the record text LogLine::parse returns parses");
        assert_eq!(parsed, line.record, "record text and record differ");
    }
    // Serialise → parse is stable, and what the agent writes gives the text back.
    let written = serde_json::to_vec(&line).expect("a LogLine serialises");
    let (again, again_text) = LogLine::parse(&written).expect("a serialised LogLine parses");
    assert_eq!(again, line, "parse(serialise(line)) != line");
    let again_text = again_text.expect("the agent's own encoding gives the record text");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(again_text).expect("record text parses"),
        line.record
    );

    let had_cluster = line.record.get("cluster").is_some();
    let mut record = line.record.clone();
    let Ok(time) = logs::validate(line.log_type, &mut record, "fuzz-cluster") else {
        return;
    };
    assert_eq!(
        record["cluster"], "fuzz-cluster",
        "validate sets the cluster"
    );
    // Validating a validated record changes nothing and gives the same time.
    let mut twice = record.clone();
    assert_eq!(
        logs::validate(line.log_type, &mut twice, "fuzz-cluster"),
        Ok(time)
    );
    assert_eq!(twice, record);
    assert_eq!(logs::record_time_ms(line.log_type, &record), Ok(time));
    // The stored text built from the received text parses to the validated record.
    if let (Some(text), false) = (text, had_cluster)
        && let Some(with) = logs::text_with_cluster(text, "fuzz-cluster")
    {
        let parsed: serde_json::Value = serde_json::from_slice(&with)
            .expect("text_with_cluster gives JSON for an object's text");
        assert_eq!(parsed, record, "text_with_cluster text != validated record");
    }
}
