//! Property tests: resourceVersion ordering and watch replay over random write sequences,
//! and persistence through the SQLite backend.

use std::sync::Arc;

use cattery_store::backend::Sqlite;
use cattery_store::{
    EventType, Filter, Kind, LabelSelector, Store, StoreError, WatchEvent, WatchStart,
};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thing;

impl Kind for Thing {
    fn group(&self) -> &'static str {
        "test.cattery.dev"
    }
    fn version(&self) -> &'static str {
        "v1"
    }
    fn kind(&self) -> &'static str {
        "Thing"
    }
    fn plural(&self) -> &'static str {
        "things"
    }
    fn namespaced(&self) -> bool {
        true
    }
}

/// One random write: object index (a few names, so writes collide), operation, label.
#[derive(Debug, Clone)]
enum Op {
    Create(u8, bool),
    Update(u8, bool, u8),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, any::<bool>()).prop_map(|(i, l)| Op::Create(i, l)),
        (0u8..6, any::<bool>(), 0u8..3).prop_map(|(i, l, s)| Op::Update(i, l, s)),
        (0u8..6).prop_map(Op::Delete),
    ]
}

fn name(i: u8) -> String {
    format!("t{i}")
}

fn labels(l: bool) -> Value {
    json!({"sel": if l { "yes" } else { "no" }})
}

/// Applies `op`; returns whether it wrote (changed the store).
fn apply(s: &Store<Thing>, op: &Op) -> bool {
    let before = s.current_rv();
    let r: Result<_, StoreError> = match op {
        Op::Create(i, l) => s.create(
            Thing,
            Some("ns"),
            json!({"metadata": {"name": name(*i), "labels": labels(*l)}, "spec": {"size": 0}}),
        ),
        Op::Update(i, l, size) => s.modify(Thing, Some("ns"), &name(*i), false, |cur| {
            let mut o = (**cur).clone();
            o["metadata"]["labels"] = labels(*l);
            o["spec"]["size"] = json!(size);
            Ok::<_, StoreError>(o)
        }),
        Op::Delete(i) => s.delete(Thing, Some("ns"), &name(*i)),
    };
    let wrote = s.current_rv() != before;
    if wrote {
        assert!(r.is_ok(), "a failed operation wrote");
        assert_eq!(s.current_rv(), before + 1, "one write, one resourceVersion");
    }
    wrote
}

fn rv_of(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every write takes exactly the next resourceVersion, the object and the event carry
    /// it, and the history is strictly increasing.
    #[test]
    fn resource_versions_increase_by_one_per_write(ops in prop::collection::vec(op(), 1..60)) {
        let s = Store::<Thing>::in_memory();
        let mut writes = 0u64;
        for o in &ops {
            if apply(&s, o) {
                writes += 1;
            }
            prop_assert_eq!(s.current_rv(), writes);
        }
        let evs = s.events_after(0).unwrap();
        prop_assert_eq!(evs.len() as u64, writes);
        for (i, e) in evs.iter().enumerate() {
            prop_assert_eq!(e.rv, i as u64 + 1);
            prop_assert_eq!(rv_of(&e.object), e.rv);
        }
        for o in s.list(&Filter::all(Thing), None, None).unwrap().items {
            prop_assert!(rv_of(&o) <= s.current_rv());
        }
    }

    /// A filtered watch started at any resourceVersion still in the history, replayed
    /// onto the list at that resourceVersion, ends at the current list; from an evicted
    /// resourceVersion it is Expired.
    #[test]
    fn watch_replay_reconstructs_the_current_state(
        ops in prop::collection::vec(op(), 1..60),
        cut in 0usize..60,
        limit in 1usize..40,
        selective in any::<bool>(),
    ) {
        let s = Store::<Thing>::with_history_limit(limit);
        let mut filter = Filter::all(Thing);
        if selective {
            filter.labels = LabelSelector::parse("sel in (yes)").unwrap();
        }
        let cut = cut.min(ops.len());
        for o in &ops[..cut] {
            apply(&s, o);
        }
        let (start, start_rv) = s.snapshot(&filter);
        for o in &ops[cut..] {
            apply(&s, o);
        }
        let mut state: std::collections::BTreeMap<String, Arc<Value>> = start
            .into_iter()
            .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), o))
            .collect();
        let mut w = s.watch(filter.clone(), WatchStart::After(start_rv));
        let evicted = s.current_rv() - start_rv > limit as u64;
        let mut last = start_rv;
        loop {
            match w.try_next() {
                Ok(Some(WatchEvent::Object(kind, o))) => {
                    prop_assert!(!evicted);
                    let rv = rv_of(&o);
                    prop_assert!(rv > last, "events in resourceVersion order");
                    last = rv;
                    let n = o["metadata"]["name"].as_str().unwrap().to_string();
                    match kind {
                        EventType::Added => prop_assert!(state.insert(n, o).is_none()),
                        EventType::Modified => prop_assert!(state.insert(n, o).is_some()),
                        EventType::Deleted => prop_assert!(state.remove(&n).is_some()),
                        EventType::Bookmark => prop_assert!(false, "no bookmarks in replay"),
                    }
                }
                Ok(Some(WatchEvent::Bookmark { .. })) => prop_assert!(false),
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(evicted, "only an evicted start is expired: {}", e);
                    prop_assert_eq!(e.code(), 410);
                    return Ok(());
                }
            }
        }
        let now: std::collections::BTreeMap<String, Arc<Value>> = s
            .list(&filter, None, None)
            .unwrap()
            .items
            .into_iter()
            .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), o))
            .collect();
        prop_assert_eq!(state, now);
    }
}

#[test]
fn sqlite_backend_keeps_objects_and_the_counter_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let open = || Store::<Thing>::open(Box::new(Sqlite::open(&path).unwrap()), 100).unwrap();
    {
        let s = open();
        for i in 0..3 {
            s.create(Thing, Some("ns"), json!({"metadata": {"name": name(i)}}))
                .unwrap();
        }
        s.delete(Thing, Some("ns"), "t1").unwrap();
        assert_eq!(s.current_rv(), 4);
    }
    let s = open();
    assert_eq!(
        s.current_rv(),
        4,
        "a delete's resourceVersion is never handed out again"
    );
    let names: Vec<String> = s
        .list(&Filter::all(Thing), None, None)
        .unwrap()
        .items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["t0", "t2"]);
    assert_eq!(
        s.events_after(3).unwrap_err().code(),
        410,
        "history from before the restart is gone"
    );
    assert!(s.events_after(4).unwrap().is_empty());
    let t = s
        .create(Thing, Some("ns"), json!({"metadata": {"name": "t9"}}))
        .unwrap();
    assert_eq!(rv_of(&t), 5);
}

#[test]
fn a_backend_failure_undoes_the_write() {
    use cattery_store::backend::{Backend, BackendError, Loaded, Write};
    struct Full;
    impl Backend for Full {
        fn load(&self) -> Result<Loaded, BackendError> {
            Ok(Loaded::default())
        }
        fn commit(&self, _: u64, _: &[Write]) -> Result<(), BackendError> {
            Err(BackendError("disk full".into()))
        }
    }
    let s = Store::<Thing>::open(Box::new(Full), 10).unwrap();
    let err = s
        .create(Thing, Some("ns"), json!({"metadata": {"name": "x"}}))
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().contains("disk full")),
        (500, true)
    );
    assert_eq!(s.current_rv(), 0);
    assert!(s.get(Thing, Some("ns"), "x").is_err());
    assert!(s.events_after(0).unwrap().is_empty());
}
