//! The simulator's objects: [`cattery_store::Store`] plus what a kube-apiserver and its
//! controllers add for the simulator's types.
//!
//! The generic semantics (resourceVersions, conflicts, generation, history, watch) are the
//! store crate's. Here: a namespaced object needs its namespace (namespace lifecycle
//! admission); a deleted namespace takes its contents with it, immediately (there is no
//! namespace controller and no Terminating phase that lasts); and server-set fields of
//! namespaces, pods (IP, phase, conditions, node) and services (cluster IP) are filled in
//! on create. A CustomResourceDefinition's writes change the types served
//! ([`crate::crd`]) in the same transaction, and deleting one deletes its objects.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use cattery_store::{StoreError, Tx, WatchStart, Watcher};
use serde_json::{Value, json};

use crate::crd::{self, Definition};
use crate::resources::{RESOURCES, ResourceType, crds, namespaces};
use crate::status::ApiError;

pub use cattery_store::{EventType, Obj, Page};

/// What a list or watch of the simulator selects.
pub type Filter = cattery_store::Filter<&'static ResourceType>;

/// How a write inside [`Store::write`] ends without committing: an error, or a dry run's
/// result (`dryRun=All`: everything is checked and computed, then rolled back).
enum Abort {
    Failed(ApiError),
    DryRun(Obj),
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        Abort::Failed(e.into())
    }
}

impl From<ApiError> for Abort {
    fn from(e: ApiError) -> Self {
        Abort::Failed(e)
    }
}

/// The simulator's whole state.
pub struct Store {
    cluster: String,
    objects: cattery_store::Store<&'static ResourceType>,
    /// Types served for the stored CRDs; changed only inside a store transaction.
    crds: crd::Registry,
    pod_cidr: ipnet::IpNet,
    pod_ips_allocated: AtomicU64,
    ips_allocated: AtomicU32,
}

impl Store {
    /// An empty store for the cluster called `cluster`, giving pods IPs from `pod_cidr`.
    pub fn new(cluster: &str, pod_cidr: ipnet::IpNet) -> Self {
        Self::with_history_limit(cluster, pod_cidr, cattery_store::HISTORY_LIMIT)
    }

    /// An empty store with a custom history size (tests use a small one).
    pub fn with_history_limit(cluster: &str, pod_cidr: ipnet::IpNet, history_limit: usize) -> Self {
        Store {
            cluster: cluster.to_string(),
            objects: cattery_store::Store::with_history_limit(history_limit),
            crds: crd::Registry::default(),
            pod_cidr,
            pod_ips_allocated: AtomicU64::new(0),
            ips_allocated: AtomicU32::new(0),
        }
    }

    /// Drops the watch history (see [`cattery_store::Store::compact`]); returns the
    /// resourceVersion compacted at.
    pub fn compact(&self) -> u64 {
        self.objects.compact()
    }

    /// The next pod IP: the CIDR's addresses in order from the second one (the first
    /// after the network address is the node's gateway, as CNIs keep it), never reused.
    /// None when the CIDR is exhausted: the pod then stays `Pending` without an IP, as
    /// with a real CNI out of addresses.
    fn next_pod_ip(&self) -> Option<IpAddr> {
        let n = u128::from(self.pod_ips_allocated.fetch_add(1, Ordering::Relaxed)) + 2;
        match self.pod_cidr {
            ipnet::IpNet::V4(net) => {
                let size = 1u128 << (32 - net.prefix_len());
                // The last address is the broadcast address.
                (n < size - 1).then(|| {
                    let base = u128::from(u32::from(net.network()));
                    IpAddr::V4(u32::try_from(base + n).expect("inside the CIDR").into())
                })
            }
            ipnet::IpNet::V6(net) => {
                let host_bits = 128 - u32::from(net.prefix_len());
                let fits = host_bits >= 128 || n < (1u128 << host_bits);
                fits.then(|| IpAddr::V6((u128::from(net.network()) + n).into()))
            }
        }
    }

    /// The CIDR pod IPs come from.
    pub fn pod_cidr(&self) -> ipnet::IpNet {
        self.pod_cidr
    }

    /// The served type at `group`/`version`/`plural`: built in, or for a stored CRD.
    pub(crate) fn find_type(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        crate::resources::find(group, version, plural)
            .or_else(|| self.crds.find(group, version, plural))
    }

    /// Every served type: the built-in ones in their order, then the CRDs' by CRD name.
    pub(crate) fn types(&self) -> Vec<&'static ResourceType> {
        RESOURCES.iter().chain(self.crds.all()).collect()
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.objects.current_rv()
    }

    /// Lists objects selected by `filter`, optionally paginated.
    pub fn list(
        &self,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        Ok(self.objects.list(filter, limit, continue_token)?)
    }

    /// One object.
    pub fn get(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Obj, ApiError> {
        Ok(self.objects.get(res, ns, name)?)
    }

    /// Starts a watch (see [`cattery_store::watch`]).
    pub fn watch(&self, filter: Filter, start: WatchStart) -> Watcher<'_, &'static ResourceType> {
        self.objects.watch(filter, start)
    }

    /// Creates an object. `obj` has been validated by the API layer (kind, name syntax);
    /// this checks the namespace and sets server-owned fields.
    /// With `dry_run`, everything is checked and the result returned, but nothing is stored
    /// (the same for every write below).
    pub fn create(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        self.write(dry_run, |tx| {
            if let Some(ns) = ns
                && tx.get(namespaces(), None, ns).is_none()
            {
                return Err(ApiError::NotFound {
                    kind: "namespaces".into(),
                    name: ns.into(),
                });
            }
            let def = (res == crds())
                .then(|| {
                    let d = Definition::parse(&obj)?;
                    d.check_names(obj["metadata"]["name"].as_str().unwrap_or(""), &self.crds)?;
                    Ok::<_, ApiError>(d)
                })
                .transpose()?;
            let created = tx.create_with(res, ns, obj, |obj| {
                self.set_defaults(res, obj);
                if let Some(d) = &def {
                    obj["status"] = d.status();
                }
            })?;
            if let Some(d) = def
                && !dry_run
            {
                self.crds.set(
                    created["metadata"]["name"].as_str().unwrap_or(""),
                    d.served_type(),
                );
            }
            Ok(created)
        })
    }

    /// Runs `f` in one store transaction; a dry run rolls it back and returns its result.
    fn write(
        &self,
        dry_run: bool,
        f: impl FnOnce(&mut Tx<'_, &'static ResourceType>) -> Result<Obj, ApiError>,
    ) -> Result<Obj, ApiError> {
        let result = self.objects.transaction(|tx| match f(tx) {
            Ok(obj) if dry_run => Err(Abort::DryRun(obj)),
            Ok(obj) => Ok(obj),
            Err(e) => Err(Abort::Failed(e)),
        });
        match result {
            Ok(obj) | Err(Abort::DryRun(obj)) => Ok(obj),
            Err(Abort::Failed(e)) => Err(e),
        }
    }

    /// Replaces an object (PUT; optimistic concurrency on `metadata.resourceVersion`).
    /// With `status_only`, only `.status` is taken from `obj` (the `/status` subresource).
    pub fn update(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        self.modify(res, ns, name, status_only, dry_run, |_| Ok(obj))
    }

    /// Read-modify-write under the store lock (PATCH): `f` computes the new object from
    /// the current one, then it is stored as by [`Store::update`].
    pub fn modify(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        dry_run: bool,
        f: impl FnOnce(&Obj) -> Result<Value, ApiError>,
    ) -> Result<Obj, ApiError> {
        self.write(dry_run, |tx| {
            let is_crd = res == crds() && !status_only;
            let updated = tx.modify(res, ns, name, status_only, |current| {
                let new = f(current)?;
                if is_crd {
                    let d = Definition::parse(&new)?;
                    d.check_update(&Definition::parse(current)?, name)?;
                    d.check_names(name, &self.crds)?;
                }
                Ok::<_, ApiError>(new)
            })?;
            if is_crd && !dry_run {
                self.crds
                    .set(name, Definition::parse(&updated)?.served_type());
            }
            Ok(updated)
        })
    }

    /// Deletes an object and returns its last state. Deleting a namespace deletes
    /// everything in it first.
    pub fn delete(
        &self,
        res: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        self.write(dry_run, |tx| {
            if tx.get(res, ns, name).is_none() {
                return Err(ApiError::NotFound {
                    kind: res.plural.into(),
                    name: name.into(),
                });
            }
            if res == crds()
                && let Some(served) = self.crds.get(name)
            {
                for obj in tx.objects(served, None) {
                    let (o_ns, o_name) = (
                        obj["metadata"]["namespace"].as_str(),
                        obj["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    tx.delete_with(served, o_ns, o_name, |_| {})?;
                }
                if !dry_run {
                    self.crds.set(name, None);
                }
            }
            if res == namespaces() {
                for child_res in self.types().into_iter().filter(|r| r.namespaced) {
                    for child in tx.objects(child_res, Some(name)) {
                        let child_name = child["metadata"]["name"].as_str().unwrap_or_default();
                        tx.delete_with(child_res, Some(name), child_name, |_| {})?;
                    }
                }
            }
            Ok(tx.delete_with(res, ns, name, |last| {
                if res == namespaces() {
                    last["metadata"]["deletionTimestamp"] = json!(cattery_store::now_rfc3339());
                    last["status"]["phase"] = json!("Terminating");
                }
            })?)
        })
    }

    fn set_defaults(&self, res: &'static ResourceType, obj: &mut Value) {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let now = cattery_store::now_rfc3339();
        if res.custom {
            return;
        }
        match res.kind {
            "Namespace" => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            "Pod" => {
                let ip = self.next_pod_ip().map(|ip| ip.to_string());
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
                obj["status"] = match ip {
                    Some(ip) => json!({
                        "phase": "Running",
                        "podIP": ip, "podIPs": [{"ip": ip}],
                        "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
                        "startTime": now,
                        "qosClass": "BestEffort",
                        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
                        "containerStatuses": containers,
                    }),
                    None => json!({
                        "phase": "Pending",
                        "qosClass": "BestEffort",
                        "conditions": [cond("PodScheduled"), {
                            "type": "Ready", "status": "False", "lastTransitionTime": now,
                            "reason": "PodIPsExhausted",
                            "message": format!("no free address in the pod CIDR {}", self.pod_cidr),
                        }],
                    }),
                };
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
                    let n = self.ips_allocated.fetch_add(1, Ordering::Relaxed) + 1;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use cattery_store::{FieldSelector, LabelSelector};

    fn pods() -> &'static ResourceType {
        find("", "v1", "pods").unwrap()
    }

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    }

    fn all_pods() -> Filter {
        Filter {
            res: pods(),
            namespace: None,
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
        }
    }

    fn store_with_ns() -> Store {
        let s = Store::with_history_limit("t", "10.244.0.0/16".parse().unwrap(), 100);
        s.create(
            namespaces(),
            None,
            json!({"metadata": {"name": "a"}}),
            false,
        )
        .unwrap();
        s
    }

    #[test]
    fn pods_get_running_status_and_distinct_ips() {
        let s = store_with_ns();
        let p1 = s.create(pods(), Some("a"), obj("p1"), false).unwrap();
        let p2 = s.create(pods(), Some("a"), obj("p2"), false).unwrap();
        assert_eq!(p1["status"]["phase"], "Running");
        assert_eq!(p1["spec"]["nodeName"], "t-node-1");
        assert_ne!(p1["status"]["podIP"], p2["status"]["podIP"]);
        let ns = s.get(namespaces(), None, "a").unwrap();
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "a");
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn create_requires_namespace_and_unique_name() {
        let s = store_with_ns();
        let err = s.create(pods(), Some("nope"), obj("p"), false).unwrap_err();
        assert_eq!(err.code(), 404);
        assert!(err.to_string().contains("nope"));
        s.create(pods(), Some("a"), obj("p"), false).unwrap();
        assert_eq!(
            s.create(pods(), Some("a"), obj("p"), false)
                .unwrap_err()
                .code(),
            409
        );
    }

    #[test]
    fn updates_keep_server_owned_status() {
        let s = store_with_ns();
        let p = s.create(pods(), Some("a"), obj("p"), false).unwrap();
        let mut changed = (*p).clone();
        changed["metadata"]["labels"] = json!({"x": "1"});
        changed["status"] = json!({"phase": "Failed"});
        let updated = s
            .update(pods(), Some("a"), "p", changed, false, false)
            .unwrap();
        assert_eq!(updated["status"]["phase"], "Running", "status is kept");
        assert_eq!(updated["metadata"]["generation"], 1);
    }

    #[test]
    fn deleting_a_namespace_deletes_its_contents_in_one_step() {
        let s = store_with_ns();
        s.create(
            namespaces(),
            None,
            json!({"metadata": {"name": "b"}}),
            false,
        )
        .unwrap();
        s.create(pods(), Some("a"), obj("p"), false).unwrap();
        s.create(pods(), Some("b"), obj("q"), false).unwrap();
        let before = s.current_rv();
        let ns = s.delete(namespaces(), None, "a", false).unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(s.current_rv(), before + 2, "the pod, then the namespace");
        let names: Vec<_> = s
            .list(&all_pods(), None, None)
            .unwrap()
            .items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["q"]);
        assert_eq!(s.get(pods(), Some("a"), "p").unwrap_err().code(), 404);
        assert_eq!(
            s.delete(namespaces(), None, "a", false).unwrap_err().code(),
            404
        );
    }

    #[test]
    fn dry_runs_check_everything_and_store_nothing() {
        let s = store_with_ns();
        let before = s.current_rv();
        let p = s.create(pods(), Some("a"), obj("p"), true).unwrap();
        assert_eq!(p["status"]["phase"], "Running", "defaults are applied");
        assert_eq!(s.current_rv(), before);
        assert_eq!(s.get(pods(), Some("a"), "p").unwrap_err().code(), 404);
        assert_eq!(
            s.create(pods(), Some("nope"), obj("p"), true)
                .unwrap_err()
                .code(),
            404,
            "a dry run still checks"
        );
        s.create(pods(), Some("a"), obj("p"), false).unwrap();
        let rv = s.current_rv();
        s.modify(pods(), Some("a"), "p", false, true, |cur| {
            let mut o = (**cur).clone();
            o["metadata"]["labels"] = json!({"x": "1"});
            Ok(o)
        })
        .unwrap();
        s.delete(namespaces(), None, "a", true).unwrap();
        assert_eq!(s.current_rv(), rv);
        let p = s.get(pods(), Some("a"), "p").unwrap();
        assert!(p["metadata"].get("labels").is_none());
    }

    #[test]
    fn pod_ips_come_from_the_cidr_until_it_is_exhausted() {
        let s = Store::with_history_limit("t", "10.9.8.0/30".parse().unwrap(), 100);
        s.create(
            namespaces(),
            None,
            json!({"metadata": {"name": "a"}}),
            false,
        )
        .unwrap();
        // 10.9.8.0 network, .1 gateway, .2 the only pod address, .3 broadcast.
        let p = s.create(pods(), Some("a"), obj("p1"), false).unwrap();
        assert_eq!(p["status"]["podIP"], "10.9.8.2");
        let p = s.create(pods(), Some("a"), obj("p2"), false).unwrap();
        assert_eq!(p["status"]["phase"], "Pending");
        assert!(p["status"].get("podIP").is_none());

        let s = Store::with_history_limit("t", "fd00:42::/64".parse().unwrap(), 100);
        s.create(
            namespaces(),
            None,
            json!({"metadata": {"name": "a"}}),
            false,
        )
        .unwrap();
        let p = s.create(pods(), Some("a"), obj("p"), false).unwrap();
        assert_eq!(p["status"]["podIP"], "fd00:42::2");
    }

    #[test]
    fn default_cidrs_avoid_host_and_service_addresses() {
        for name in ["sim", "a", "b", "prod-1", "prod-2"] {
            let c = crate::default_pod_cidr(name);
            let ipnet::IpNet::V4(v4) = c else { panic!() };
            assert!(v4.network().octets()[1] >= 128, "{c}");
            assert_eq!(c, crate::default_pod_cidr(name), "stable");
        }
        assert_ne!(crate::default_pod_cidr("a"), crate::default_pod_cidr("b"));
    }
}
