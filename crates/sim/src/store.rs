//! The in-memory object store, its resourceVersions and its watch history.
//!
//! Semantics copied from Kubernetes (etcd + watch cache):
//! - one global, monotonically increasing resourceVersion; every write
//!   (create, update, patch, delete) takes the next one;
//! - every write appends an event to a bounded history (the last
//!   [`HISTORY_LIMIT`] events); a watch from resourceVersion N is served
//!   every later event in order, or `410 Gone` once N has left the history;
//! - server-owned fields (uid, creationTimestamp, generation, resourceVersion,
//!   pod IPs and phase, service cluster IPs, status) are set here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::resources::{RESOURCES, ResourceType, has_status_subresource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// How many events the watch history keeps.
pub const HISTORY_LIMIT: usize = 10_000;

/// A stored object; shared between the map, the history and responses.
pub type Obj = Arc<Value>;

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created (or, for a filtered watch, started matching).
    Added,
    /// Object changed.
    Modified,
    /// Object deleted (or stopped matching).
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, as recorded in the history.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the write.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The type of the object.
    pub res: &'static ResourceType,
    /// The object after the write (for deletes: its last state).
    pub object: Obj,
    /// The object before the write (for updates), so filtered watches can
    /// turn "stopped matching" into DELETED like the watch cache does.
    pub old: Option<Obj>,
}

/// What a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The type.
    pub res: &'static ResourceType,
    /// Restrict to one namespace (None = all namespaces / cluster-scoped).
    pub namespace: Option<String>,
    /// `?labelSelector=`
    pub labels: LabelSelector,
    /// `?fieldSelector=`
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether `obj` (of type `res`) is selected.
    pub fn matches(&self, res: &'static ResourceType, obj: &Value) -> bool {
        std::ptr::eq(res, self.res)
            && self.namespace.as_deref().is_none_or(|ns| {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            })
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// Translates a history event into what this watcher should see, if anything.
    pub fn view(&self, ev: &Event) -> Option<(EventType, Obj)> {
        let now = self.matches(ev.res, &ev.object);
        let before = ev.old.as_ref().is_some_and(|o| self.matches(ev.res, o));
        match (ev.kind, before, now) {
            (EventType::Modified, true, true) => Some((EventType::Modified, ev.object.clone())),
            (EventType::Modified, false, true) => Some((EventType::Added, ev.object.clone())),
            (EventType::Modified, true, false) => Some((EventType::Deleted, ev.object.clone())),
            (EventType::Modified, false, false) => None,
            (kind, _, true) => Some((kind, ev.object.clone())),
            _ => None,
        }
    }
}

/// A page of a list.
pub struct Page {
    /// The selected objects.
    pub items: Vec<Obj>,
    /// The store's resourceVersion when the list was taken.
    pub rv: u64,
    /// Token for the next page, if `limit` cut the list short.
    pub continue_token: Option<String>,
}

type Key = (usize, String, String);

struct Inner {
    objects: BTreeMap<Key, Obj>,
    rv: u64,
    history: VecDeque<Event>,
    /// Highest resourceVersion whose event has been dropped from the history.
    evicted_upto: u64,
    ips_allocated: u32,
}

/// The simulator's whole state.
pub struct Store {
    cluster: String,
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
    history_limit: usize,
}

fn res_index(res: &'static ResourceType) -> usize {
    RESOURCES
        .iter()
        .position(|r| std::ptr::eq(r, res))
        .expect("resource from RESOURCES")
}

fn key(res: &'static ResourceType, ns: Option<&str>, name: &str) -> Key {
    (
        res_index(res),
        ns.unwrap_or("").to_string(),
        name.to_string(),
    )
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn not_found(res: &ResourceType, name: &str) -> ApiError {
    ApiError::NotFound {
        kind: res.plural.into(),
        name: name.into(),
    }
}

impl Store {
    /// An empty store for the cluster called `cluster`.
    pub fn new(cluster: &str) -> Self {
        Self::with_history_limit(cluster, HISTORY_LIMIT)
    }

    /// An empty store with a custom history size (tests use a small one).
    pub fn with_history_limit(cluster: &str, history_limit: usize) -> Self {
        Store {
            cluster: cluster.to_string(),
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 0,
                history: VecDeque::new(),
                evicted_upto: 0,
                ips_allocated: 0,
            }),
            notify: watch::channel(0).0,
            history_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes whenever a write happens (value = latest rv).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventType,
        res: &'static ResourceType,
        object: Obj,
        old: Option<Obj>,
    ) {
        inner.history.push_back(Event {
            rv: inner.rv,
            kind,
            res,
            object,
            old,
        });
        while inner.history.len() > self.history_limit {
            let ev = inner.history.pop_front().expect("non-empty");
            inner.evicted_upto = ev.rv;
        }
        self.notify.send_replace(inner.rv);
    }

    /// Lists objects selected by `filter`, optionally paginated.
    pub fn list(
        &self,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        let inner = self.lock();
        let idx = res_index(filter.res);
        let start: Key = match continue_token {
            Some(tok) => {
                let raw = hex::decode(tok)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let (ns, name) =
                    raw.as_deref()
                        .and_then(|r| r.split_once('/'))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!("invalid continue token {tok:?}"))
                        })?;
                (idx, ns.to_string(), format!("{name}\0"))
            }
            None => (idx, String::new(), String::new()),
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        for ((i, ns, name), obj) in inner.objects.range(start..) {
            if *i != idx {
                break;
            }
            if !filter.matches(filter.res, obj) {
                continue;
            }
            if limit.is_some_and(|l| l > 0 && items.len() == l) {
                let (last_ns, last_name) = items
                    .last()
                    .map(|o: &Obj| {
                        (
                            meta_str(o, "namespace").unwrap_or(""),
                            meta_str(o, "name").unwrap_or(""),
                        )
                    })
                    .unwrap_or((ns, name));
                continue_token = Some(hex::encode(format!("{last_ns}/{last_name}")));
                break;
            }
            items.push(obj.clone());
        }
        Ok(Page {
            items,
            rv: inner.rv,
            continue_token,
        })
    }

    /// All objects selected by `filter` plus the rv they are current at,
    /// taken atomically (the start of a watch with synthetic ADDED events).
    pub fn snapshot(&self, filter: &Filter) -> (Vec<Obj>, u64) {
        let page = self.list(filter, None, None).expect("no continue token");
        (page.items, page.rv)
    }

    /// One object.
    pub fn get(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Obj, ApiError> {
        self.lock()
            .objects
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| not_found(res, name))
    }

    /// Events with a resourceVersion greater than `after`, or `Expired` if
    /// some of them have already been dropped from the history.
    pub fn events_after(&self, after: u64) -> Result<Vec<Event>, ApiError> {
        let inner = self.lock();
        if after < inner.evicted_upto {
            let oldest = inner.history.front().map_or(inner.rv, |e| e.rv);
            return Err(ApiError::Expired {
                requested: after,
                oldest,
            });
        }
        let start = inner.history.partition_point(|e| e.rv <= after);
        Ok(inner.history.range(start..).cloned().collect())
    }

    /// Creates an object. `obj` has been validated by the API layer (kind,
    /// name syntax); this checks existence and sets server-owned fields.
    pub fn create(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Obj, ApiError> {
        let mut inner = self.lock();
        if let Some(ns) = ns
            && !inner
                .objects
                .contains_key(&key(crate::resources::namespaces(), None, ns))
        {
            return Err(ApiError::NotFound {
                kind: "namespaces".into(),
                name: ns.into(),
            });
        }
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("validated: metadata is an object");
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            meta.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
        }
        let name = meta["name"].as_str().expect("set above").to_string();
        let k = key(res, ns, &name);
        if inner.objects.contains_key(&k) {
            return Err(ApiError::AlreadyExists {
                kind: res.plural.into(),
                name,
            });
        }
        inner.rv += 1;
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.insert("resourceVersion".into(), json!(inner.rv.to_string()));
        if let Some(ns) = ns {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        self.set_defaults(&mut inner, res, &name, &mut obj);
        let obj = Arc::new(obj);
        inner.objects.insert(k, obj.clone());
        self.record(&mut inner, EventType::Added, res, obj.clone(), None);
        Ok(obj)
    }

    fn set_defaults(
        &self,
        inner: &mut Inner,
        res: &'static ResourceType,
        name: &str,
        obj: &mut Value,
    ) {
        let now = now_rfc3339();
        match res.kind {
            "Namespace" => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            "Pod" => {
                inner.ips_allocated += 1;
                let n = inner.ips_allocated;
                let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
                let spec = obj["spec"]
                    .as_object_mut()
                    .map(std::mem::take)
                    .unwrap_or_default();
                let mut spec = Value::Object(spec);
                for (k, v) in [
                    ("nodeName", json!(format!("{}-node-1", self.cluster))),
                    ("restartPolicy", json!("Always")),
                    ("dnsPolicy", json!("ClusterFirst")),
                    ("schedulerName", json!("default-scheduler")),
                    ("terminationGracePeriodSeconds", json!(30)),
                ] {
                    spec.as_object_mut().expect("object").entry(k).or_insert(v);
                }
                let containers: Vec<Value> = spec["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        json!({
                            "name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                            "started": true, "restartCount": 0,
                            "containerID": format!("sim://{}", &uuid::Uuid::new_v4().to_string()[..8]),
                            "state": {"running": {"startedAt": now}},
                        })
                    })
                    .collect();
                obj["spec"] = spec;
                let cond =
                    |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
                obj["status"] = json!({
                    "phase": "Running",
                    "podIP": ip, "podIPs": [{"ip": ip}],
                    "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
                    "startTime": now,
                    "qosClass": "BestEffort",
                    "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
                    "containerStatuses": containers,
                });
            }
            "Service" => {
                let spec = obj["spec"]
                    .as_object_mut()
                    .map(std::mem::take)
                    .unwrap_or_default();
                let mut spec = Value::Object(spec);
                spec["type"] = spec.get("type").cloned().unwrap_or(json!("ClusterIP"));
                if spec
                    .get("clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    inner.ips_allocated += 1;
                    let n = inner.ips_allocated;
                    let ip = format!("10.96.{}.{}", n / 250, n % 250 + 10);
                    spec["clusterIP"] = json!(ip);
                }
                spec["clusterIPs"] = json!([spec["clusterIP"]]);
                spec.as_object_mut()
                    .expect("object")
                    .entry("sessionAffinity")
                    .or_insert(json!("None"));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert(json!("TCP"));
                        let port = p.get("port").cloned().unwrap_or(Value::Null);
                        p.entry("targetPort").or_insert(port);
                    }
                }
                obj["spec"] = spec;
                obj["status"] = json!({"loadBalancer": {}});
            }
            _ => {}
        }
    }

    /// Replaces an object (PUT). A non-empty `metadata.resourceVersion` in
    /// `obj` must equal the stored one (optimistic concurrency, 409 otherwise).
    /// With `status_only`, only `.status` is taken from `obj` (the `/status`
    /// subresource); otherwise server-owned status is kept.
    pub fn update(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        status_only: bool,
    ) -> Result<Obj, ApiError> {
        self.modify(res, ns, name, status_only, |_| Ok(obj))
    }

    /// Read-modify-write under the store lock (PATCH): `f` computes the new
    /// object from the current one, then it is stored as by [`Store::update`].
    pub fn modify(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        f: impl FnOnce(&Obj) -> Result<Value, ApiError>,
    ) -> Result<Obj, ApiError> {
        let mut inner = self.lock();
        let k = key(res, ns, name);
        let old = inner
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| not_found(res, name))?;
        let mut obj = f(&old)?;
        let stored_rv = meta_str(&old, "resourceVersion").unwrap_or("");
        match meta_str(&obj, "resourceVersion") {
            Some(rv) if !rv.is_empty() && rv != stored_rv => {
                return Err(ApiError::Conflict(format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                     please apply your changes to the latest version and try again \
                     (sent resourceVersion {rv}, current is {stored_rv})",
                    res.plural
                )));
            }
            _ => {}
        }
        if status_only {
            let status = obj.get("status").cloned().unwrap_or(Value::Null);
            obj = (*old).clone();
            obj["status"] = status;
        } else if has_status_subresource(res) {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        // Server-owned metadata is carried over from the stored object.
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("validated: metadata is an object");
        for f in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
        ] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        let spec_changed = {
            let strip = |v: &Value| -> Map<String, Value> {
                let mut m = v.as_object().cloned().unwrap_or_default();
                m.remove("metadata");
                m.remove("status");
                m
            };
            strip(&old) != strip(&obj)
        };
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        inner.rv += 1;
        let meta = obj["metadata"].as_object_mut().expect("still an object");
        meta.insert(
            "generation".into(),
            json!(generation + i64::from(spec_changed)),
        );
        meta.insert("resourceVersion".into(), json!(inner.rv.to_string()));
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let obj = Arc::new(obj);
        inner.objects.insert(k, obj.clone());
        self.record(&mut inner, EventType::Modified, res, obj.clone(), Some(old));
        Ok(obj)
    }

    /// Deletes an object and returns its last state. Deleting a namespace
    /// deletes everything in it first (immediately; there is no namespace
    /// controller and no Terminating phase that lasts).
    pub fn delete(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Obj, ApiError> {
        let mut inner = self.lock();
        let k = key(res, ns, name);
        if !inner.objects.contains_key(&k) {
            return Err(not_found(res, name));
        }
        if res.kind == "Namespace" {
            let children: Vec<Key> = inner
                .objects
                .keys()
                .filter(|(i, child_ns, _)| RESOURCES[*i].namespaced && child_ns == name)
                .cloned()
                .collect();
            for child in children {
                self.remove(&mut inner, &child);
            }
        }
        Ok(self.remove(&mut inner, &k))
    }

    fn remove(&self, inner: &mut Inner, k: &Key) -> Obj {
        let old = inner.objects.remove(k).expect("caller checked");
        let res = &RESOURCES[k.0];
        inner.rv += 1;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        if res.kind == "Namespace" {
            last["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            last["status"]["phase"] = json!("Terminating");
        }
        let last = Arc::new(last);
        self.record(inner, EventType::Deleted, res, last.clone(), None);
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{find, namespaces};

    fn pods() -> &'static ResourceType {
        find("", "v1", "pods").unwrap()
    }

    fn obj(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    }

    fn filter(ns: Option<&str>, labels: &str) -> Filter {
        Filter {
            res: pods(),
            namespace: ns.map(str::to_string),
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
        }
    }

    fn store_with_ns(limit: usize) -> Store {
        let s = Store::with_history_limit("t", limit);
        s.create(namespaces(), None, json!({"metadata": {"name": "a"}}))
            .unwrap();
        s
    }

    #[test]
    fn resource_versions_are_global_and_monotonic() {
        let s = store_with_ns(100);
        let p1 = s.create(pods(), Some("a"), obj("p1", json!({}))).unwrap();
        let p2 = s.create(pods(), Some("a"), obj("p2", json!({}))).unwrap();
        let rv = |o: &Value| {
            meta_str(o, "resourceVersion")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&p2) > rv(&p1));
        assert_eq!(s.current_rv(), rv(&p2));
        assert_eq!(p1["status"]["phase"], "Running");
        assert_ne!(p1["status"]["podIP"], p2["status"]["podIP"]);
        assert_eq!(s.list(&filter(None, ""), None, None).unwrap().rv, rv(&p2));
    }

    #[test]
    fn create_requires_namespace_and_unique_name() {
        let s = store_with_ns(100);
        let err = s
            .create(pods(), Some("nope"), obj("p", json!({})))
            .unwrap_err();
        assert_eq!(err.code(), 404);
        assert!(err.to_string().contains("nope"));
        s.create(pods(), Some("a"), obj("p", json!({}))).unwrap();
        assert_eq!(
            s.create(pods(), Some("a"), obj("p", json!({})))
                .unwrap_err()
                .code(),
            409
        );
    }

    #[test]
    fn stale_update_conflicts_and_generation_tracks_spec() {
        let s = store_with_ns(100);
        let p = s.create(pods(), Some("a"), obj("p", json!({}))).unwrap();
        let mut changed = (*p).clone();
        changed["metadata"]["labels"]["x"] = json!("1");
        let updated = s
            .update(pods(), Some("a"), "p", changed.clone(), false)
            .unwrap();
        assert_eq!(
            updated["metadata"]["generation"], 1,
            "label change is not a spec change"
        );
        assert_eq!(updated["status"]["phase"], "Running", "status is kept");
        let err = s
            .update(pods(), Some("a"), "p", changed, false)
            .unwrap_err();
        assert_eq!(err.code(), 409);
        let mut spec = (*updated).clone();
        spec["spec"]["containers"][0]["image"] = json!("j");
        assert_eq!(
            s.update(pods(), Some("a"), "p", spec, false).unwrap()["metadata"]["generation"],
            2
        );
    }

    #[test]
    fn history_delivers_every_later_event_in_order() {
        let s = store_with_ns(100);
        let start = s.current_rv();
        s.create(pods(), Some("a"), obj("p1", json!({}))).unwrap();
        s.create(pods(), Some("a"), obj("p2", json!({}))).unwrap();
        s.delete(pods(), Some("a"), "p1").unwrap();
        let evs = s.events_after(start).unwrap();
        let kinds: Vec<_> = evs
            .iter()
            .map(|e| (e.kind, meta_str(&e.object, "name").unwrap().to_string()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (EventType::Added, "p1".into()),
                (EventType::Added, "p2".into()),
                (EventType::Deleted, "p1".into())
            ]
        );
        assert!(evs.windows(2).all(|w| w[0].rv < w[1].rv));
        assert_eq!(s.events_after(s.current_rv()).unwrap().len(), 0);
    }

    #[test]
    fn too_old_resource_version_is_expired() {
        let s = store_with_ns(3);
        let start = s.current_rv();
        for i in 0..5 {
            s.create(pods(), Some("a"), obj(&format!("p{i}"), json!({})))
                .unwrap();
        }
        let err = s.events_after(start).unwrap_err();
        assert_eq!(err.code(), 410);
        assert_eq!(err.to_status()["reason"], "Expired");
        assert_eq!(s.events_after(s.current_rv() - 3).unwrap().len(), 3);
    }

    #[test]
    fn filtered_watch_sees_label_changes_as_added_and_deleted() {
        let s = store_with_ns(100);
        let start = s.current_rv();
        let p = s
            .create(pods(), Some("a"), obj("p", json!({"app": "x"})))
            .unwrap();
        let mut moved = (*p).clone();
        moved["metadata"]["labels"]["app"] = json!("y");
        let moved = s.update(pods(), Some("a"), "p", moved, false).unwrap();
        let mut back = (*moved).clone();
        back["metadata"]["labels"]["app"] = json!("x");
        s.update(pods(), Some("a"), "p", back, false).unwrap();
        let f = filter(Some("a"), "app=x");
        let seen: Vec<_> = s
            .events_after(start)
            .unwrap()
            .iter()
            .filter_map(|e| f.view(e))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            seen,
            vec![EventType::Added, EventType::Deleted, EventType::Added]
        );
    }

    #[test]
    fn deleting_a_namespace_deletes_its_contents() {
        let s = store_with_ns(100);
        s.create(namespaces(), None, json!({"metadata": {"name": "b"}}))
            .unwrap();
        s.create(pods(), Some("a"), obj("p", json!({}))).unwrap();
        s.create(pods(), Some("b"), obj("q", json!({}))).unwrap();
        let ns = s.delete(namespaces(), None, "a").unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        let names: Vec<_> = s
            .list(&filter(None, ""), None, None)
            .unwrap()
            .items
            .iter()
            .map(|o| meta_str(o, "name").unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["q"]);
        assert_eq!(s.get(pods(), Some("a"), "p").unwrap_err().code(), 404);
    }

    #[test]
    fn pagination_with_limit_and_continue() {
        let s = store_with_ns(100);
        for i in 0..5 {
            s.create(pods(), Some("a"), obj(&format!("p{i}"), json!({})))
                .unwrap();
        }
        let f = filter(None, "");
        let first = s.list(&f, Some(2), None).unwrap();
        assert_eq!(first.items.len(), 2);
        let tok = first.continue_token.unwrap();
        let second = s.list(&f, Some(10), Some(&tok)).unwrap();
        let names: Vec<_> = second
            .items
            .iter()
            .map(|o| meta_str(o, "name").unwrap())
            .collect();
        assert_eq!(names, vec!["p2", "p3", "p4"]);
        assert!(second.continue_token.is_none());
    }
}
