//! The object store: one resourceVersion counter, optimistic concurrency, a bounded event
//! history, and write-through to a [`Backend`].
//!
//! Semantics copied from Kubernetes (etcd + the watch cache):
//! - one monotonically increasing resourceVersion per store; every write (create, update,
//!   delete) takes the next one, and so does every object a [`Tx`] writes;
//! - an update whose result equals the stored object is not a write (no new
//!   resourceVersion, no event), like kube-apiserver's no-op updates;
//! - an update carrying a non-empty `metadata.resourceVersion` must carry the stored one
//!   (409 Conflict otherwise); `metadata.generation` grows when anything outside
//!   `metadata` and `status` changes;
//! - every write appends an event to a bounded history; a watch from resourceVersion N is
//!   served every later event in order, or [`StoreError::Expired`] (410 Gone) once N has
//!   left the history;
//! - server-owned metadata (uid, creationTimestamp, generation, resourceVersion) is set
//!   here. Type-specific defaults (a pod's IP, a namespace's phase) are the caller's, passed
//!   to [`Tx::create_with`].
//!
//! Everything lives in memory behind one mutex; a transaction is written to the backend
//! before it becomes visible, and rolled back in memory if the backend refuses it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::backend::{Backend, Memory, ObjectKey, Write};
use crate::selector::{FieldSelector, LabelSelector};

/// How many events the watch history keeps by default.
pub const HISTORY_LIMIT: usize = 10_000;

/// A stored object; shared between the map, the history and responses.
pub type Obj = Arc<Value>;

/// A resource type as the store needs to know it. Implemented by the caller's type table
/// (the simulator's `ResourceType`s, the hub's kinds), so the store holds no domain kinds.
pub trait Kind: Copy + Eq + Debug + Send + Sync + 'static {
    /// API group; empty for the core group.
    fn group(&self) -> &'static str;
    /// API version within the group.
    fn version(&self) -> &'static str;
    /// Object `kind`.
    fn kind(&self) -> &'static str;
    /// Plural resource name (URLs, error messages).
    fn plural(&self) -> &'static str;
    /// Whether objects live in a namespace.
    fn namespaced(&self) -> bool;
    /// Whether `status` is a subresource: ordinary updates then keep the stored status.
    fn has_status_subresource(&self) -> bool {
        false
    }
    /// `apiVersion` as written in objects: `v1` or `group/version`.
    fn api_version(&self) -> String {
        if self.group().is_empty() {
            self.version().to_string()
        } else {
            format!("{}/{}", self.group(), self.version())
        }
    }
}

/// Why a store operation failed. [`StoreError::code`] and [`StoreError::reason`] are what
/// an HTTP layer puts into a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Resource (plural), e.g. `pods`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// Create of a name that exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource (plural).
        resource: String,
        /// Object name.
        name: String,
    },
    /// A stale resourceVersion (optimistic concurrency).
    #[error("{0}")]
    Conflict(String),
    /// A watch or list asked for history that is no longer kept.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// What the client asked for.
        requested: u64,
        /// The oldest resourceVersion still retained.
        oldest: u64,
    },
    /// The request is malformed (bad continue token, metadata not an object).
    #[error("{0}")]
    BadRequest(String),
    /// The backend could not persist the write; nothing was changed.
    #[error("storing the change failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// HTTP status code of this error.
    pub fn code(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::AlreadyExists { .. } | StoreError::Conflict(_) => 409,
            StoreError::Expired { .. } => 410,
            StoreError::BadRequest(_) => 400,
            StoreError::Backend(_) => 500,
        }
    }

    /// Kubernetes `Status.reason` of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "NotFound",
            StoreError::AlreadyExists { .. } => "AlreadyExists",
            StoreError::Conflict(_) => "Conflict",
            StoreError::Expired { .. } => "Expired",
            StoreError::BadRequest(_) => "BadRequest",
            StoreError::Backend(_) => "InternalError",
        }
    }
}

/// Watch event types (the wire's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created (or, for a filtered watch, started matching).
    Added,
    /// Object changed.
    Modified,
    /// Object deleted (or stopped matching).
    Deleted,
    /// No object change: the watch has seen everything up to a resourceVersion.
    Bookmark,
}

impl EventType {
    /// The wire name (`ADDED`...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
        }
    }
}

/// One write, as recorded in the history.
#[derive(Debug, Clone)]
pub struct Event<K> {
    /// resourceVersion of the write.
    pub rv: u64,
    /// What happened (never [`EventType::Bookmark`]).
    pub kind: EventType,
    /// The type of the object.
    pub res: K,
    /// The object after the write (for deletes: its last state).
    pub object: Obj,
    /// The object before the write (for updates), so filtered watches can turn "stopped
    /// matching" into DELETED like the watch cache does.
    pub old: Option<Obj>,
}

/// What a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter<K> {
    /// The type.
    pub res: K,
    /// Restrict to one namespace (None = all namespaces / cluster-scoped).
    pub namespace: Option<String>,
    /// `?labelSelector=`
    pub labels: LabelSelector,
    /// `?fieldSelector=`
    pub fields: FieldSelector,
}

impl<K: Kind> Filter<K> {
    /// Everything of type `res`.
    pub fn all(res: K) -> Self {
        Filter {
            res,
            namespace: None,
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
        }
    }

    /// Whether `obj` (of type `res`) is selected.
    pub fn matches(&self, res: K, obj: &Value) -> bool {
        res == self.res
            && self.namespace.as_deref().is_none_or(|ns| {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            })
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// Translates a history event into what this watcher should see, if anything.
    pub fn view(&self, ev: &Event<K>) -> Option<(EventType, Obj)> {
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
#[derive(Debug)]
pub struct Page {
    /// The selected objects.
    pub items: Vec<Obj>,
    /// The store's resourceVersion when the list was taken.
    pub rv: u64,
    /// Token for the next page, if `limit` cut the list short.
    pub continue_token: Option<String>,
    /// How many selected objects come after this page (Kubernetes' `remainingItemCount`):
    /// what a count needs without reading every object (0 when the page is the last).
    pub remaining: usize,
}

type Key = (String, String, String);

fn type_key<K: Kind>(res: K) -> String {
    format!("{}/{}", res.group(), res.plural())
}

fn key<K: Kind>(res: K, ns: Option<&str>, name: &str) -> Key {
    (
        type_key(res),
        ns.unwrap_or("").to_string(),
        name.to_string(),
    )
}

struct Inner<K> {
    objects: BTreeMap<Key, Obj>,
    rv: u64,
    history: VecDeque<Event<K>>,
    /// Highest resourceVersion whose event has been dropped from the history (or that
    /// precedes the store's start, for a store loaded from a backend).
    evicted_upto: u64,
}

/// Objects of any [`Kind`], their resourceVersions and their watch history.
pub struct Store<K> {
    inner: Mutex<Inner<K>>,
    notify: watch::Sender<u64>,
    history_limit: usize,
    backend: Box<dyn Backend>,
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).expect("OS randomness");
    b.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn not_found<K: Kind>(res: K, name: &str) -> StoreError {
    StoreError::NotFound {
        resource: res.plural().into(),
        name: name.into(),
    }
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| StoreError::BadRequest("the object must be a JSON object".into()))?;
    map.entry("metadata").or_insert_with(|| json!({}));
    map.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| StoreError::BadRequest("metadata: must be an object".into()))
}

impl<K: Kind> Default for Store<K> {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl<K: Kind> Store<K> {
    /// An empty in-memory store.
    pub fn in_memory() -> Self {
        Self::with_history_limit(HISTORY_LIMIT)
    }

    /// An empty in-memory store with a custom history size (tests use a small one).
    pub fn with_history_limit(history_limit: usize) -> Self {
        Self::open(Box::new(Memory), history_limit).expect("the memory backend loads nothing")
    }

    /// A store holding what `backend` has persisted, writing through to it. Watches from
    /// before the load are [`StoreError::Expired`]: the history starts empty.
    pub fn open(backend: Box<dyn Backend>, history_limit: usize) -> Result<Self, StoreError> {
        let loaded = backend
            .load()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut objects = BTreeMap::new();
        for (k, v) in loaded.objects {
            objects.insert((k.type_key, k.namespace, k.name), Arc::new(v));
        }
        Ok(Store {
            inner: Mutex::new(Inner {
                objects,
                rv: loaded.rv,
                history: VecDeque::new(),
                evicted_upto: loaded.rv,
            }),
            notify: watch::channel(loaded.rv).0,
            history_limit: history_limit.max(1),
            backend,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes whenever a write is committed (value = latest rv).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Lists objects selected by `filter`, optionally paginated.
    pub fn list(
        &self,
        filter: &Filter<K>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, StoreError> {
        self.list_where(filter, limit, continue_token, |_| true)
    }

    /// [`Store::list`] of the objects `keep` accepts too, with `limit` counting only
    /// those: a caller allowed to see a few names gets full pages of them (filtering a
    /// page afterwards would hand out short or empty pages with a continue token).
    pub fn list_where(
        &self,
        filter: &Filter<K>,
        limit: Option<usize>,
        continue_token: Option<&str>,
        keep: impl Fn(&Obj) -> bool,
    ) -> Result<Page, StoreError> {
        let inner = self.lock();
        let tk = type_key(filter.res);
        let start: Key = match continue_token {
            Some(tok) => {
                let raw = hex::decode(tok)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let (ns, name) =
                    raw.as_deref()
                        .and_then(|r| r.split_once('/'))
                        .ok_or_else(|| {
                            StoreError::BadRequest(format!("invalid continue token {tok:?}"))
                        })?;
                (tk.clone(), ns.to_string(), format!("{name}\0"))
            }
            None => (tk.clone(), String::new(), String::new()),
        };
        let mut items: Vec<Obj> = Vec::new();
        let mut continue_token = None;
        let mut remaining = 0;
        for ((t, _, _), obj) in inner.objects.range(start..) {
            if *t != tk {
                break;
            }
            if !filter.matches(filter.res, obj) || !keep(obj) {
                continue;
            }
            // Past a full page only counted, never copied.
            if continue_token.is_some() {
                remaining += 1;
                continue;
            }
            if limit.is_some_and(|l| l > 0 && items.len() == l) {
                let last = items.last().expect("limit > 0");
                continue_token = Some(hex::encode(format!(
                    "{}/{}",
                    meta_str(last, "namespace").unwrap_or(""),
                    meta_str(last, "name").unwrap_or("")
                )));
                remaining = 1;
                continue;
            }
            items.push(obj.clone());
        }
        Ok(Page {
            items,
            rv: inner.rv,
            continue_token,
            remaining,
        })
    }

    /// All objects selected by `filter` plus the rv they are current at, taken atomically
    /// (the start of a watch with synthetic ADDED events).
    pub fn snapshot(&self, filter: &Filter<K>) -> (Vec<Obj>, u64) {
        let page = self.list(filter, None, None).expect("no continue token");
        (page.items, page.rv)
    }

    /// One object.
    pub fn get(&self, res: K, ns: Option<&str>, name: &str) -> Result<Obj, StoreError> {
        self.lock()
            .objects
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| not_found(res, name))
    }

    /// Drops the whole watch history, as an etcd compaction at the current revision does:
    /// a watch or a resume from any earlier resourceVersion is then [`StoreError::Expired`]
    /// (410 Gone) and its client must list again. Returns the resourceVersion compacted at.
    pub fn compact(&self) -> u64 {
        let mut inner = self.lock();
        inner.history.clear();
        inner.evicted_upto = inner.rv;
        inner.rv
    }

    /// Events with a resourceVersion greater than `after`, or [`StoreError::Expired`] if
    /// some of them have already been dropped from the history.
    pub fn events_after(&self, after: u64) -> Result<Vec<Event<K>>, StoreError> {
        let inner = self.lock();
        if after < inner.evicted_upto {
            let oldest = inner.history.front().map_or(inner.rv, |e| e.rv);
            return Err(StoreError::Expired {
                requested: after,
                oldest,
            });
        }
        let start = inner.history.partition_point(|e| e.rv <= after);
        Ok(inner.history.range(start..).cloned().collect())
    }

    /// Runs `f` with exclusive access to the store. Its writes are committed together
    /// (persisted, then published to watchers) when it returns `Ok`, and undone when it
    /// returns `Err` or the backend refuses them.
    pub fn transaction<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_, K>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut inner = self.lock();
        let start_rv = inner.rv;
        let mut tx = Tx {
            inner: &mut inner,
            writes: Vec::new(),
            undo: Vec::new(),
            events: Vec::new(),
        };
        let result = f(&mut tx);
        let Tx {
            writes,
            undo,
            events,
            ..
        } = tx;
        let committed = match result {
            Ok(v) if writes.is_empty() => return Ok(v),
            Ok(v) => match self.backend.commit(inner.rv, &writes) {
                Ok(()) => Ok(v),
                Err(e) => Err(E::from(StoreError::Backend(e.to_string()))),
            },
            Err(e) => Err(e),
        };
        if committed.is_err() {
            for (k, old) in undo.into_iter().rev() {
                match old {
                    Some(o) => inner.objects.insert(k, o),
                    None => inner.objects.remove(&k),
                };
            }
            inner.rv = start_rv;
            return committed;
        }
        for ev in events {
            inner.history.push_back(ev);
        }
        while inner.history.len() > self.history_limit {
            let ev = inner.history.pop_front().expect("non-empty");
            inner.evicted_upto = ev.rv;
        }
        self.notify.send_replace(inner.rv);
        committed
    }

    /// Creates an object (see [`Tx::create_with`]).
    pub fn create(&self, res: K, ns: Option<&str>, obj: Value) -> Result<Obj, StoreError> {
        self.transaction(|tx| tx.create_with(res, ns, obj, |_| {}))
    }

    /// Replaces an object (PUT; see [`Tx::modify`]).
    pub fn update(
        &self,
        res: K,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        status_only: bool,
    ) -> Result<Obj, StoreError> {
        self.transaction(|tx| tx.modify(res, ns, name, status_only, |_| Ok(obj)))
    }

    /// Read-modify-write under the store lock (PATCH; see [`Tx::modify`]).
    pub fn modify<E: From<StoreError>>(
        &self,
        res: K,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        f: impl FnOnce(&Obj) -> Result<Value, E>,
    ) -> Result<Obj, E> {
        self.transaction(|tx| tx.modify(res, ns, name, status_only, f))
    }

    /// Deletes an object and returns its last state.
    pub fn delete(&self, res: K, ns: Option<&str>, name: &str) -> Result<Obj, StoreError> {
        self.transaction(|tx| tx.delete_with(res, ns, name, |_| {}))
    }
}

/// Exclusive access to a [`Store`] inside [`Store::transaction`]: reads see the
/// transaction's own writes; nothing is visible to others until it commits.
pub struct Tx<'a, K> {
    inner: &'a mut Inner<K>,
    writes: Vec<Write>,
    undo: Vec<(Key, Option<Obj>)>,
    events: Vec<Event<K>>,
}

impl<K: Kind> Tx<'_, K> {
    /// One object, if it exists.
    pub fn get(&self, res: K, ns: Option<&str>, name: &str) -> Option<Obj> {
        self.inner.objects.get(&key(res, ns, name)).cloned()
    }

    /// Every object of type `res` (in namespace `ns` when given), by namespace and name.
    pub fn objects(&self, res: K, ns: Option<&str>) -> Vec<Obj> {
        let tk = type_key(res);
        let start = (tk.clone(), ns.unwrap_or("").to_string(), String::new());
        self.inner
            .objects
            .range(start..)
            .take_while(|((t, n, _), _)| *t == tk && ns.is_none_or(|ns| ns == n))
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn put(&mut self, k: Key, obj: Option<Obj>) {
        let old = match &obj {
            Some(o) => self.inner.objects.insert(k.clone(), o.clone()),
            None => self.inner.objects.remove(&k),
        };
        self.undo.push((k.clone(), old));
        let (type_key, namespace, name) = k;
        self.writes.push(Write {
            key: ObjectKey {
                type_key,
                namespace,
                name,
            },
            object: obj,
            rv: self.inner.rv,
        });
    }

    fn record(&mut self, kind: EventType, res: K, object: Obj, old: Option<Obj>) {
        self.events.push(Event {
            rv: self.inner.rv,
            kind,
            res,
            object,
            old,
        });
    }

    /// Creates an object: `metadata.generateName` is resolved, the name must be free,
    /// server-owned metadata, `apiVersion` and `kind` are set, then `defaults` fills in
    /// what the type's server would (it sees the final name and resourceVersion).
    pub fn create_with(
        &mut self,
        res: K,
        ns: Option<&str>,
        mut obj: Value,
        defaults: impl FnOnce(&mut Value),
    ) -> Result<Obj, StoreError> {
        let meta = metadata_mut(&mut obj)?;
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
            if prefix.is_empty() {
                return Err(StoreError::BadRequest(
                    "metadata.name: Required value: name or generateName is required".into(),
                ));
            }
            meta.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
        }
        let name = meta["name"].as_str().expect("set above").to_string();
        let k = key(res, ns, &name);
        if self.inner.objects.contains_key(&k) {
            return Err(StoreError::AlreadyExists {
                resource: res.plural().into(),
                name,
            });
        }
        self.inner.rv += 1;
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.insert("resourceVersion".into(), json!(self.inner.rv.to_string()));
        match ns {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind());
        defaults(&mut obj);
        let obj = Arc::new(obj);
        self.put(k, Some(obj.clone()));
        self.record(EventType::Added, res, obj.clone(), None);
        Ok(obj)
    }

    /// Read-modify-write: `f` computes the new object from the current one. A non-empty
    /// `metadata.resourceVersion` in the result must equal the stored one (optimistic
    /// concurrency, 409 otherwise). With `status_only`, only `.status` is taken from the
    /// result (the `/status` subresource); otherwise a type with a status subresource
    /// keeps its stored status. A result equal to the stored object writes nothing.
    pub fn modify<E: From<StoreError>>(
        &mut self,
        res: K,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        f: impl FnOnce(&Obj) -> Result<Value, E>,
    ) -> Result<Obj, E> {
        let k = key(res, ns, name);
        let old = self
            .inner
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| not_found(res, name))?;
        let mut obj = f(&old)?;
        let stored_rv = meta_str(&old, "resourceVersion").unwrap_or("");
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
            && rv != stored_rv
        {
            return Err(StoreError::Conflict(format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again \
                 (sent resourceVersion {rv}, current is {stored_rv})",
                res.plural()
            ))
            .into());
        }
        if status_only {
            let status = obj.get("status").cloned().unwrap_or(Value::Null);
            obj = (*old).clone();
            obj["status"] = status;
        } else if res.has_status_subresource() {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        // Server-owned metadata is carried over from the stored object.
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let meta = metadata_mut(&mut obj)?;
        for f in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind());
        if obj == *old {
            return Ok(old);
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
        self.inner.rv += 1;
        let meta = metadata_mut(&mut obj)?;
        meta.insert(
            "generation".into(),
            json!(generation + i64::from(spec_changed)),
        );
        meta.insert("resourceVersion".into(), json!(self.inner.rv.to_string()));
        let obj = Arc::new(obj);
        self.put(k, Some(obj.clone()));
        self.record(EventType::Modified, res, obj.clone(), Some(old));
        Ok(obj)
    }

    /// Deletes an object and returns its last state (with the delete's resourceVersion;
    /// `finish` may decorate it, e.g. with a `deletionTimestamp`).
    pub fn delete_with(
        &mut self,
        res: K,
        ns: Option<&str>,
        name: &str,
        finish: impl FnOnce(&mut Value),
    ) -> Result<Obj, StoreError> {
        let k = key(res, ns, name);
        let old = self
            .inner
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| not_found(res, name))?;
        self.inner.rv += 1;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(self.inner.rv.to_string());
        finish(&mut last);
        let last = Arc::new(last);
        self.put(k, None);
        self.record(EventType::Deleted, res, last.clone(), None);
        Ok(last)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A kind for tests.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum T {
        Widget,
        Gadget,
        Node,
    }

    impl Kind for T {
        fn group(&self) -> &'static str {
            "test.cattery.dev"
        }
        fn version(&self) -> &'static str {
            "v1"
        }
        fn kind(&self) -> &'static str {
            match self {
                T::Widget => "Widget",
                T::Gadget => "Gadget",
                T::Node => "Node",
            }
        }
        fn plural(&self) -> &'static str {
            match self {
                T::Widget => "widgets",
                T::Gadget => "gadgets",
                T::Node => "nodes",
            }
        }
        fn namespaced(&self) -> bool {
            *self != T::Node
        }
        fn has_status_subresource(&self) -> bool {
            *self == T::Gadget
        }
    }

    pub(crate) fn obj(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"size": 1}})
    }

    fn rv(o: &Value) -> u64 {
        meta_str(o, "resourceVersion").unwrap().parse().unwrap()
    }

    fn filter(ns: Option<&str>, labels: &str) -> Filter<T> {
        Filter {
            res: T::Widget,
            namespace: ns.map(str::to_string),
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
        }
    }

    #[test]
    fn create_sets_server_fields_and_refuses_existing_names() {
        let s = Store::<T>::in_memory();
        let w = s.create(T::Widget, Some("a"), obj("w", json!({}))).unwrap();
        assert_eq!(w["apiVersion"], "test.cattery.dev/v1");
        assert_eq!(w["kind"], "Widget");
        assert_eq!(w["metadata"]["namespace"], "a");
        assert_eq!(w["metadata"]["generation"], 1);
        assert!(w["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert_eq!(rv(&w), 1);
        let err = s
            .create(T::Widget, Some("a"), obj("w", json!({})))
            .unwrap_err();
        assert_eq!((err.code(), err.reason()), (409, "AlreadyExists"));
        assert_eq!(
            s.current_rv(),
            1,
            "a refused create takes no resourceVersion"
        );
        // Same name, other namespace or other type: distinct objects.
        s.create(T::Widget, Some("b"), obj("w", json!({}))).unwrap();
        s.create(T::Gadget, Some("a"), obj("w", json!({}))).unwrap();
        let g = s
            .create(
                T::Widget,
                Some("a"),
                json!({"metadata": {"generateName": "w-"}}),
            )
            .unwrap();
        assert!(meta_str(&g, "name").unwrap().starts_with("w-"));
        assert_eq!(
            s.create(T::Widget, Some("a"), json!({"metadata": {}}))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn stale_update_conflicts_and_generation_tracks_spec() {
        let s = Store::<T>::in_memory();
        let w = s.create(T::Widget, Some("a"), obj("w", json!({}))).unwrap();
        let mut changed = (*w).clone();
        changed["metadata"]["labels"]["x"] = json!("1");
        let updated = s
            .update(T::Widget, Some("a"), "w", changed.clone(), false)
            .unwrap();
        assert_eq!(updated["metadata"]["generation"], 1, "labels are not spec");
        assert!(rv(&updated) > rv(&w));
        let err = s
            .update(T::Widget, Some("a"), "w", changed, false)
            .unwrap_err();
        assert_eq!((err.code(), err.reason()), (409, "Conflict"));
        let mut spec = (*updated).clone();
        spec["spec"]["size"] = json!(2);
        let bumped = s.update(T::Widget, Some("a"), "w", spec, false).unwrap();
        assert_eq!(bumped["metadata"]["generation"], 2);
        // Without a resourceVersion the update is unconditional.
        let mut blind = (*bumped).clone();
        blind["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        blind["spec"]["size"] = json!(3);
        assert_eq!(
            s.update(T::Widget, Some("a"), "w", blind, false).unwrap()["metadata"]["generation"],
            3
        );
        assert_eq!(
            s.update(T::Widget, Some("a"), "nope", json!({}), false)
                .unwrap_err()
                .code(),
            404
        );
    }

    #[test]
    fn unchanged_update_is_not_a_write() {
        let s = Store::<T>::in_memory();
        let w = s.create(T::Widget, Some("a"), obj("w", json!({}))).unwrap();
        let again = s
            .update(T::Widget, Some("a"), "w", (*w).clone(), false)
            .unwrap();
        assert_eq!(again, w);
        assert_eq!(s.current_rv(), 1);
        assert_eq!(s.events_after(1).unwrap().len(), 0);
    }

    #[test]
    fn status_subresource_keeps_status_apart() {
        let s = Store::<T>::in_memory();
        let g = s.create(T::Gadget, Some("a"), obj("g", json!({}))).unwrap();
        let mut with_status = (*g).clone();
        with_status["status"] = json!({"ready": true});
        let kept = s
            .update(T::Gadget, Some("a"), "g", with_status.clone(), false)
            .unwrap();
        assert!(
            kept.get("status").is_none(),
            "ordinary update ignores status"
        );
        let set = s
            .update(T::Gadget, Some("a"), "g", with_status, true)
            .unwrap();
        assert_eq!(set["status"]["ready"], true);
        assert_eq!(set["metadata"]["generation"], 1);
    }

    #[test]
    fn history_and_expiry() {
        let s = Store::<T>::with_history_limit(3);
        let start = s.current_rv();
        for i in 0..5 {
            s.create(T::Widget, Some("a"), obj(&format!("w{i}"), json!({})))
                .unwrap();
        }
        let err = s.events_after(start).unwrap_err();
        assert_eq!((err.code(), err.reason()), (410, "Expired"));
        assert_eq!(err.to_string(), "too old resource version: 0 (3)");
        let evs = s.events_after(s.current_rv() - 3).unwrap();
        assert_eq!(evs.len(), 3);
        assert!(evs.windows(2).all(|w| w[0].rv < w[1].rv));
        assert_eq!(s.events_after(s.current_rv()).unwrap().len(), 0);

        // Compacted: nothing before the current resourceVersion can be resumed from;
        // from it on, later writes are served as usual.
        let before = s.current_rv() - 1;
        assert_eq!(s.compact(), s.current_rv());
        assert_eq!(s.events_after(before).unwrap_err().code(), 410);
        let at = s.current_rv();
        assert_eq!(s.events_after(at).unwrap().len(), 0);
        s.create(T::Widget, Some("a"), obj("late", json!({})))
            .unwrap();
        assert_eq!(s.events_after(at).unwrap().len(), 1);
    }

    #[test]
    fn filtered_watch_sees_label_changes_as_added_and_deleted() {
        let s = Store::<T>::in_memory();
        let p = s
            .create(T::Widget, Some("a"), obj("p", json!({"app": "x"})))
            .unwrap();
        let mut moved = (*p).clone();
        moved["metadata"]["labels"]["app"] = json!("y");
        let moved = s.update(T::Widget, Some("a"), "p", moved, false).unwrap();
        let mut back = (*moved).clone();
        back["metadata"]["labels"]["app"] = json!("x");
        s.update(T::Widget, Some("a"), "p", back, false).unwrap();
        s.delete(T::Widget, Some("a"), "p").unwrap();
        let f = filter(Some("a"), "app=x");
        let seen: Vec<_> = s
            .events_after(0)
            .unwrap()
            .iter()
            .filter_map(|e| f.view(e))
            .map(|(k, _)| k)
            .collect();
        use EventType::*;
        assert_eq!(seen, vec![Added, Deleted, Added, Deleted]);
        assert!(
            s.events_after(0)
                .unwrap()
                .iter()
                .all(|e| filter(Some("b"), "").view(e).is_none())
        );
    }

    #[test]
    fn pagination_with_limit_and_continue() {
        let s = Store::<T>::in_memory();
        for i in 0..5 {
            s.create(T::Widget, Some("a"), obj(&format!("p{i}"), json!({})))
                .unwrap();
        }
        s.create(T::Gadget, Some("a"), obj("g", json!({}))).unwrap();
        let f = filter(None, "");
        let first = s.list(&f, Some(2), None).unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(
            first.remaining, 3,
            "p2..p4 come after, the gadget is not counted"
        );
        let tok = first.continue_token.unwrap();
        let second = s.list(&f, Some(10), Some(&tok)).unwrap();
        let names: Vec<_> = second
            .items
            .iter()
            .map(|o| meta_str(o, "name").unwrap())
            .collect();
        assert_eq!(names, vec!["p2", "p3", "p4"], "other types are not listed");
        assert!(second.continue_token.is_none());
        assert_eq!(second.remaining, 0);
        assert_eq!(s.list(&f, None, Some("zz")).unwrap_err().code(), 400);
    }

    #[test]
    fn a_kept_subset_fills_whole_pages() {
        let s = Store::<T>::in_memory();
        for i in 0..10 {
            s.create(T::Widget, Some("a"), obj(&format!("p{i}"), json!({})))
                .unwrap();
        }
        // Only the odd names are kept: the limit counts kept objects, not scanned ones.
        let odd = |o: &Obj| {
            meta_str(o, "name")
                .unwrap()
                .ends_with(['1', '3', '5', '7', '9'])
        };
        let f = filter(None, "");
        let first = s.list_where(&f, Some(2), None, odd).unwrap();
        let names = |p: &Page| -> Vec<String> {
            p.items
                .iter()
                .map(|o| meta_str(o, "name").unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&first), vec!["p1", "p3"]);
        assert_eq!(
            first.remaining, 3,
            "only kept objects are counted as remaining"
        );
        let tok = first.continue_token.clone().unwrap();
        let rest = s.list_where(&f, Some(5), Some(&tok), odd).unwrap();
        assert_eq!(names(&rest), vec!["p5", "p7", "p9"]);
        assert!(rest.continue_token.is_none());
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let s = Store::<T>::in_memory();
        s.create(T::Node, None, obj("n", json!({}))).unwrap();
        let r: Result<(), StoreError> = s.transaction(|tx| {
            tx.create_with(T::Widget, Some("a"), obj("w", json!({})), |_| {})?;
            tx.delete_with(T::Node, None, "n", |_| {})?;
            assert_eq!(tx.objects(T::Node, None).len(), 0, "the tx sees its writes");
            tx.delete_with(T::Node, None, "n", |_| {})?;
            Ok(())
        });
        assert_eq!(r.unwrap_err().code(), 404);
        assert_eq!(s.current_rv(), 1);
        assert!(s.get(T::Node, None, "n").is_ok());
        assert!(s.get(T::Widget, Some("a"), "w").is_err());
        assert_eq!(s.events_after(1).unwrap().len(), 0);
    }
}
