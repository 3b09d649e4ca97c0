//! `POST /apis/cattery.dev/v1/federatedpolicies/preview`: what a FederatedPolicy would
//! change in the traffic each selected cluster actually had, before anything is placed.
//!
//! The body is a FederatedPolicy, validated exactly as a create is (a 400 naming the
//! field); nothing is stored and nothing is sent to a cluster. For every cluster the
//! placement selects (the planner's [`Selection`] over the current ManagedClusters):
//!
//! 1. the caller must be allowed to read that cluster's flow logs (the same RBAC as a log
//!    search), else the cluster is `Forbidden` and nothing of it is read;
//! 2. the cluster's NetworkPolicies and namespace labels are read live through its tunnel
//!    as the controllers' identity ([`ClusterClient`]), and the policy is rendered for it
//!    with the planner's [`render`] (overrides included); a disconnected cluster is
//!    `Unreachable`, not skipped;
//! 3. its flow records of the window are aggregated *in the log store* (a paged composite
//!    aggregation over the fields a verdict depends on, with the endpoints' labels as
//!    sub-aggregations), never fetched raw, so 24 hours of flows cost the number of
//!    distinct flow shapes, not the number of records;
//! 4. each group is decided by `cattery-netpol` with the cluster's policies as they are and
//!    with the rendered ones in place, and the groups whose verdict changes are reported.
//!
//! See `docs/design/0017-policy-preview.md`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use cattery_api::federation::preview::{
    Change, ClusterPreview, DEFAULT_SINCE, FederatedPolicyPreview, FlowChange, FlowCounts,
    FlowEndpoint, NotEvaluated, PREVIEW_KIND, PreviewMeta, PreviewSpec, PreviewState,
    PreviewStatus,
};
use cattery_api::federation::{FederatedPolicy, OWNER_LABEL, ObjectKey, ResourceKind};
use cattery_federation::fleet::Selection;
use cattery_federation::render::{Identity as RenderIdentity, RemoteIndex, render};
use cattery_federation::{Cluster, remote_peers};
use cattery_logstore::{LogType, SearchRequest, TimeRange};
use cattery_netpol::{Evaluator, FlowEnd, FlowPod, Labels, NetworkPolicy, Outcome, Proto};
use cattery_store::Filter;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::observe::dynamic;
use crate::AppState;
use crate::api::kinds::HubKind;
use crate::auth::Identity;
use crate::cluster_client::{ClusterClient, DynamicKind, ListParams};
use crate::handler::extract::Path;
use crate::handler::{ApiError, AuthzOutcome, MAX_RESOURCE_BODY, identity, read_body};

/// The last path segment that asks for a preview (`…/federatedpolicies/preview`).
pub(crate) const SEGMENT: &str = "preview";
/// Clusters previewed at the same time.
const CONCURRENCY: usize = 8;
/// Longest time one cluster's reads (policies, namespaces) may take.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(15);
/// Composite buckets per log-store page: each carries two label sub-aggregations, so a
/// page stays far below the store's bucket limit.
const PAGE_BUCKETS: u32 = 500;
/// Most pages read per cluster (a million distinct flow shapes); beyond, the cluster's
/// counts are partial and its message says so.
const MAX_PAGES: usize = 2_000;
/// Most distinct reported groups kept per cluster (memory bound); further groups are
/// counted but not listed, and the message says so.
const MAX_GROUPS: usize = 10_000;
/// Label values read per endpoint and group (the labels of one pod).
const MAX_LABELS: u32 = 256;
/// Longest a cluster's aggregation waits for room in the log store's search memory budget
/// (more clusters are previewed at once than the default budget runs aggregations).
const BUSY_WAIT: Duration = Duration::from_secs(60);
/// Pause between two tries while the log store is busy.
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// Runs one flow aggregation, waiting (at most [`BUSY_WAIT`]) while the log store answers
/// that its search memory budget is taken by other searches: a preview of many clusters
/// runs [`CONCURRENCY`] of them at a time, which the store's budget need not allow.
async fn search_when_free(
    st: &AppState,
    req: SearchRequest,
) -> Result<cattery_logstore::SearchResponse, String> {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        let (logs, r) = (st.logs.clone(), req.clone());
        let res = tokio::task::spawn_blocking(move || logs.store.search(LogType::Flows, &r))
            .await
            .map_err(|e| format!("the log store's search task failed: {e}"))?;
        match res {
            Err(cattery_logstore::LogStoreError::Busy { .. })
                if tokio::time::Instant::now() + BUSY_RETRY < deadline =>
            {
                tokio::time::sleep(BUSY_RETRY).await;
            }
            other => {
                return other
                    .map_err(|e| format!("the log store refused the flow aggregation: {e}"));
            }
        }
    }
}

/// Longest window accepted.
const MAX_SINCE: Duration = Duration::from_secs(400 * 24 * 3600);

const NAMESPACES: DynamicKind = DynamicKind {
    api_version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    namespaced: false,
};

/// The handler. Mounted as `POST …/federatedpolicies/{name}`: any other name is a 405,
/// as a POST to an object path is in Kubernetes.
pub(crate) async fn handle(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    if name != SEGMENT {
        return Err(ApiError::with_reason(
            405,
            "MethodNotAllowed",
            format!(
                "method POST is not allowed on {} (POST a FederatedPolicy to …/federatedpolicies/{SEGMENT} to preview it)",
                req.uri().path()
            ),
        ));
    }
    let query = req.uri().query().map(str::to_string);
    let who = identity(&req);
    // The body is read before the query is judged: a 400 sent while the client is still
    // sending would close the connection under it (curl then sees a reset, not the 400).
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let since_text = since_param(query.as_deref())?;
    let since = parse_since(&since_text)?;
    let value = cattery_api::wire::parse(&body)?;
    crate::api::kinds::validate_federated_policy(&value)?;
    let policy = cattery_api::federation::validate_value(&value).map_err(|e| {
        let s = e.status();
        ApiError::with_reason(s.code, &s.reason, s.message)
    })?;

    let now = time::OffsetDateTime::now_utc();
    let to_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    let from_ms = to_ms - since.as_millis() as i64;
    let fleet = load_fleet(&st);
    let selection = Selection::new(&policy.spec.placement)
        .map_err(|e| ApiError::new(400, format!("spec.placement: {e}")))?;
    let selected: Vec<Cluster> = fleet
        .iter()
        .filter(|c| selection.matches(c))
        .cloned()
        .collect();

    let (clusters, outcome) =
        preview_all(&st, &who, &policy, &fleet, selected, from_ms, to_ms).await;
    let answer = FederatedPolicyPreview {
        api_version: cattery_api::API_VERSION.into(),
        kind: PREVIEW_KIND.into(),
        metadata: PreviewMeta {
            name: policy.metadata.name.clone(),
        },
        spec: PreviewSpec {
            since: since_text,
            from: rfc3339_ms(from_ms),
            to: rfc3339_ms(to_ms),
        },
        status: PreviewStatus { clusters },
    };
    Ok(outcome.attach(axum::Json(answer).into_response()))
}

fn since_param(query: Option<&str>) -> Result<String, ApiError> {
    let mut since = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "since" => since = Some(v.into_owned()),
            other => {
                return Err(ApiError::with_reason(
                    400,
                    "BadRequest",
                    format!("unknown query parameter {other:?}; the preview takes only \"since\""),
                ));
            }
        }
    }
    Ok(since.unwrap_or_else(|| DEFAULT_SINCE.into()))
}

fn parse_since(s: &str) -> Result<Duration, ApiError> {
    let bad = |why: String| {
        ApiError::with_reason(
            400,
            "BadRequest",
            format!("query parameter \"since\": {why}"),
        )
    };
    let d = humantime::parse_duration(s)
        .map_err(|e| bad(format!("{s:?} is not a duration like 24h or 90m: {e}")))?;
    if d.is_zero() || d > MAX_SINCE {
        return Err(bad(format!(
            "{s:?} must be more than 0 and at most {}",
            humantime::format_duration(MAX_SINCE)
        )));
    }
    Ok(d)
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// ManagedClusters with their labels and whether their tunnel is up, as the reconciler
/// sees them.
fn load_fleet(st: &AppState) -> Vec<Cluster> {
    let (objs, _) = st.resources.snapshot(&Filter::all(HubKind::ManagedCluster));
    let mut fleet: Vec<Cluster> = objs
        .iter()
        .filter_map(|o| {
            let name = o.pointer("/metadata/name")?.as_str()?.to_string();
            let labels = string_map(o.pointer("/metadata/labels"));
            let connected = st.registry.sender(&name).is_ok();
            Some(Cluster {
                name,
                labels,
                connected,
            })
        })
        .collect();
    fleet.sort_by(|a, b| a.name.cmp(&b.name));
    fleet
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every selected cluster's result (by name), and the audit outcome: which clusters'
/// flows the caller could and could not read.
async fn preview_all(
    st: &Arc<AppState>,
    who: &Identity,
    policy: &FederatedPolicy,
    fleet: &[Cluster],
    selected: Vec<Cluster>,
    from_ms: i64,
    to_ms: i64,
) -> (Vec<ClusterPreview>, AuthzOutcome) {
    let authz = st.authz.current();
    let requester = cattery_rbac::Requester {
        user: &who.user,
        groups: &who.groups,
    };
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let policy = Arc::new(policy.clone());
    let fleet: Arc<[Cluster]> = fleet.into();
    let mut out = Vec::new();
    let (mut readable, mut forbidden) = (Vec::new(), Vec::new());
    let mut tasks = JoinSet::new();
    for c in selected {
        let d = authz.log_access(&requester, LogType::Flows.as_str(), &c.name);
        if !d.allowed {
            forbidden.push(c.name.clone());
            out.push(empty(
                &c.name,
                PreviewState::Forbidden,
                format!("may not read this cluster's flow logs: {}", d.reason),
            ));
            continue;
        }
        readable.push(c.name.clone());
        if !c.connected {
            out.push(empty(
                &c.name,
                PreviewState::Unreachable,
                "the cluster is not connected: its policies in force cannot be read, so its flows were not evaluated".into(),
            ));
            continue;
        }
        let (st, limit, policy, fleet) = (st.clone(), limit.clone(), policy.clone(), fleet.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            preview_cluster(&st, &policy, &fleet, &c, from_ms, to_ms).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(p) => out.push(p),
            Err(e) => tracing::error!("policy preview: a cluster's task failed: {e}"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let mut reason = format!("policy preview: flows readable in {readable:?}");
    if !forbidden.is_empty() {
        reason.push_str(&format!("; flows forbidden in {forbidden:?}"));
    }
    let outcome = AuthzOutcome {
        allowed: true,
        reason,
        name: Some(SEGMENT.into()),
    };
    (out, outcome)
}

fn empty(name: &str, state: PreviewState, message: String) -> ClusterPreview {
    ClusterPreview {
        name: name.into(),
        state,
        message,
        flows: FlowCounts::default(),
        changes: Vec::new(),
        undetermined: Vec::new(),
        not_evaluated: Vec::new(),
    }
}

/// What the cluster holds that the evaluation needs.
struct Live {
    network_policies: Vec<Value>,
    namespaces: BTreeMap<String, Labels>,
    calico: Vec<Value>,
}

async fn read_live(client: &ClusterClient) -> Result<Live, String> {
    let all = ListParams::default();
    let network_policies = client
        .list_values(&dynamic(ResourceKind::NetworkPolicy), None, &all)
        .await
        .map_err(|e| format!("reading its NetworkPolicies: {e}"))?;
    let namespaces = client
        .list_values(&NAMESPACES, None, &all)
        .await
        .map_err(|e| format!("reading its namespaces: {e}"))?
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?.to_string();
            Some((name, string_map(n.pointer("/metadata/labels"))))
        })
        .collect();
    let mut calico = Vec::new();
    for kind in ResourceKind::ALL
        .into_iter()
        .filter(|k| *k != ResourceKind::NetworkPolicy)
    {
        match client.list_values(&dynamic(kind), None, &all).await {
            Ok(items) => calico.extend(items),
            // Calico is not installed: nothing of its kinds is in force.
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(format!("reading its {kind} objects: {e}")),
        }
    }
    Ok(Live {
        network_policies,
        namespaces,
        calico,
    })
}

const CALICO_REASON: &str = "Calico projectcalico.org/v3 kinds are not evaluated: their selector language, order, tiers and Deny/Pass/Log actions are not implemented by the evaluator (crates/netpol)";

fn not_evaluated(obj: &Value, origin: &str, reason: &str) -> Option<NotEvaluated> {
    let key = ObjectKey::of(obj)?;
    Some(NotEvaluated {
        api_version: key.kind.api_version().into(),
        kind: key.kind.kind().into(),
        namespace: key.namespace,
        name: key.name,
        origin: origin.into(),
        reason: reason.into(),
    })
}

async fn preview_cluster(
    st: &AppState,
    policy: &FederatedPolicy,
    fleet: &[Cluster],
    cluster: &Cluster,
    from_ms: i64,
    to_ms: i64,
) -> ClusterPreview {
    let name = &cluster.name;
    let failed = |m: String| empty(name, PreviewState::Failed, m);
    // The policy as the reconciler would render it for this cluster, except for remote
    // peers: the preview does not read the remote clusters' pods (the reconciler's
    // watches are its own), so remote-peer rules render without addresses (dropped,
    // fail-closed), and the message says so.
    let peers = remote_peers(policy);
    let remote = match RemoteIndex::new(&peers, fleet, &BTreeMap::new()) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let id = RenderIdentity {
        name: &policy.metadata.name,
        uid: None,
        generation: 0,
    };
    let rendered = match render(policy, id, cluster, &remote) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };

    let client = match ClusterClient::connect(&st.registry, name) {
        Ok(c) => c,
        Err(e) => {
            return empty(
                name,
                PreviewState::Unreachable,
                format!("the cluster is not connected ({e}): its flows were not evaluated"),
            );
        }
    };
    let live = match tokio::time::timeout(CLUSTER_TIMEOUT, read_live(&client)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return failed(e),
        Err(_) => {
            return failed(format!(
                "reading its policies took over {CLUSTER_TIMEOUT:?}"
            ));
        }
    };

    let mut messages = Vec::new();
    if !peers.is_empty() {
        messages.push(
            "remote peers (cattery.dev/remotePeers) were rendered without remote pods (the preview does not read them; the placed policy admits their current addresses): rules left with no peer are dropped, so flows from remote pods may show as denied".to_string(),
        );
    }
    let owner = policy.metadata.name.as_str();
    let rendered_keys: Vec<&ObjectKey> = rendered.iter().map(|(k, _)| k).collect();
    let mut not_eval = Vec::new();
    // The cluster's Kubernetes policies with the previewed one applied: its objects
    // replace those at the same names, and objects it placed before but no longer
    // renders are gone (the reconciler deletes them).
    let mut before = Vec::new();
    let mut after = Vec::new();
    for obj in &live.network_policies {
        let Some(np) = NetworkPolicy::from_object(obj) else {
            continue;
        };
        before.push(np.clone());
        let key = ObjectKey::of(obj);
        let owned = obj
            .pointer("/metadata/labels")
            .and_then(|l| l.get(OWNER_LABEL))
            .and_then(Value::as_str);
        if let Some(k) = &key
            && rendered_keys.contains(&k)
        {
            if owned != Some(owner) {
                messages.push(format!(
                    "{k} already exists and is not owned by this policy: applying it would fail with Conflict (evaluated as if it were replaced)"
                ));
            }
            continue;
        }
        if owned == Some(owner) {
            continue;
        }
        after.push(np);
    }
    for (key, obj) in &rendered {
        if key.kind == ResourceKind::NetworkPolicy {
            if let Some(np) = NetworkPolicy::from_object(obj) {
                after.push(np);
            }
        } else {
            not_eval.extend(not_evaluated(obj, "policy", CALICO_REASON));
        }
    }
    for obj in &live.calico {
        not_eval.extend(not_evaluated(
            obj,
            "cluster",
            "in force in the cluster but not evaluated (Calico kinds are not implemented by the evaluator): the verdicts of flows it decides may differ",
        ));
    }
    let before = Evaluator::new(before, live.namespaces.clone());
    let after = Evaluator::new(after, live.namespaces);

    let mut replay = Replay::new(before, after);
    if let Err(e) = replay.run(st, name, from_ms, to_ms).await {
        return failed(e);
    }
    messages.extend(replay.notes());
    let (changes, undetermined) = replay.groups();
    ClusterPreview {
        name: name.clone(),
        state: PreviewState::Evaluated,
        message: messages.join("; "),
        flows: replay.counts,
        changes,
        undetermined,
        not_evaluated: not_eval,
    }
}

/// The key of a reported group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupKey {
    change: Change,
    direction: &'static str,
    source: FlowEndpoint,
    destination: FlowEndpoint,
    protocol: String,
    port: Option<u16>,
    detail: String,
}

/// Folds the store's flow groups into counts and reported groups.
struct Replay {
    before: Evaluator,
    after: Evaluator,
    with_ips: bool,
    counts: FlowCounts,
    groups: HashMap<GroupKey, (u64, u64)>,
    dropped_groups: u64,
    truncated: bool,
}

/// One composite bucket: the fields a verdict depends on, for `records` flow records.
struct Bucket {
    reporter: String,
    action: String,
    proto: String,
    port: Option<u16>,
    source: FlowEndpoint,
    destination: FlowEndpoint,
    source_ip: Option<IpAddr>,
    dest_ip: Option<IpAddr>,
    /// `None` when the records of the bucket do not all carry the same labels.
    source_labels: Option<Labels>,
    dest_labels: Option<Labels>,
    records: u64,
    flows: u64,
}

impl Replay {
    fn new(before: Evaluator, after: Evaluator) -> Replay {
        let with_ips = before.uses_ip_blocks() || after.uses_ip_blocks();
        Replay {
            before,
            after,
            with_ips,
            counts: FlowCounts::default(),
            groups: HashMap::new(),
            dropped_groups: 0,
            truncated: false,
        }
    }

    /// The composite aggregation: one bucket per distinct combination of the fields a
    /// verdict depends on (addresses only when some policy has an ipBlock), with the
    /// records' labels and summed `num_flows`.
    fn aggs(&self, after: Option<&Value>) -> Value {
        let mut fields = vec![
            ("reporter", "reporter"),
            ("action", "action"),
            ("proto", "proto"),
            ("dport", "dest_port"),
            ("stype", "source_type"),
            ("sns", "source_namespace"),
            ("sname", "source_name_aggr"),
            ("dtype", "dest_type"),
            ("dns", "dest_namespace"),
            ("dname", "dest_name_aggr"),
        ];
        if self.with_ips {
            fields.push(("sip", "source_ip"));
            fields.push(("dip", "dest_ip"));
        }
        let sources: Vec<Value> = fields
            .iter()
            .map(|(name, field)| {
                let mut source = serde_json::Map::new();
                source.insert(
                    (*name).to_string(),
                    json!({"terms": {"field": field, "missing_bucket": true}}),
                );
                Value::Object(source)
            })
            .collect();
        let mut composite = json!({"size": PAGE_BUCKETS, "sources": sources});
        if let Some(a) = after {
            composite["after"] = a.clone();
        }
        json!({"g": {
            "composite": composite,
            "aggs": {
                "nf": {"sum": {"field": "num_flows"}},
                "sl": {"terms": {"field": "source_labels.labels", "size": MAX_LABELS}},
                "dl": {"terms": {"field": "dest_labels.labels", "size": MAX_LABELS}},
            }
        }})
    }

    async fn run(
        &mut self,
        st: &AppState,
        cluster: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(), String> {
        let mut after: Option<Value> = None;
        for page in 0.. {
            if page == MAX_PAGES {
                self.truncated = true;
                break;
            }
            let req = SearchRequest {
                clusters: vec![cluster.to_string()],
                time_range: Some(TimeRange {
                    from: Some(json!(from_ms)),
                    to: Some(json!(to_ms)),
                }),
                size: Some(0),
                aggs: Some(self.aggs(after.as_ref())),
                ..SearchRequest::default()
            };
            let res = search_when_free(st, req).await?;
            if page == 0 {
                self.counts.records = res.hits.total.value;
            }
            let g = res
                .aggregations
                .as_ref()
                .and_then(|a| a.get("g"))
                .ok_or("the log store answered without the flow aggregation")?;
            let buckets = g
                .get("buckets")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for b in buckets {
                match parse_bucket(b) {
                    Some(b) => self.add(b),
                    None => {
                        let n = b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
                        self.counts.undetermined += n;
                    }
                }
            }
            match g
                .get("after_key")
                .filter(|k| k.as_object().is_some_and(|m| !m.is_empty()))
            {
                Some(k) if buckets.len() == PAGE_BUCKETS as usize => after = Some(k.clone()),
                _ => break,
            }
        }
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.truncated {
            out.push(format!(
                "stopped after {MAX_PAGES} pages of {PAGE_BUCKETS} distinct flow groups: the counts cover part of the window"
            ));
        }
        if self.dropped_groups > 0 {
            out.push(format!(
                "{} records fall in groups beyond the first {MAX_GROUPS} and are counted but not listed",
                self.dropped_groups
            ));
        }
        out
    }

    fn add(&mut self, b: Bucket) {
        let direction = if b.reporter == "src" {
            "Egress"
        } else {
            "Ingress"
        };
        let key = |change, detail: String| GroupKey {
            change,
            direction,
            source: b.source.clone(),
            destination: b.destination.clone(),
            protocol: b.proto.clone(),
            port: b.port,
            detail,
        };
        let decided = self.decide(&b);
        let group = match decided {
            Err(why) => {
                self.counts.undetermined += b.records;
                Some(key(Change::Undetermined, why))
            }
            Ok((now, with)) => {
                self.counts.evaluated += b.records;
                let now_allowed = now.action() == Some(cattery_netpol::Action::Allow);
                let recorded_allowed = b.action == "allow";
                if now_allowed != recorded_allowed {
                    self.counts.recorded_mismatch += b.records;
                }
                let with_allowed = with.action() == Some(cattery_netpol::Action::Allow);
                if now_allowed == with_allowed {
                    None
                } else {
                    self.counts.changed += b.records;
                    let change = if now_allowed {
                        Change::AllowedToDenied
                    } else {
                        Change::DeniedToAllowed
                    };
                    Some(key(change, decider(&with)))
                }
            }
        };
        if let Some(k) = group {
            let full = self.groups.len() >= MAX_GROUPS;
            match self.groups.get_mut(&k) {
                Some(v) => {
                    v.0 += b.records;
                    v.1 += b.flows;
                }
                None if full => self.dropped_groups += b.records,
                None => {
                    self.groups.insert(k, (b.records, b.flows));
                }
            }
        }
    }

    /// The verdicts without and with the policy, or why there are none.
    fn decide(&self, b: &Bucket) -> Result<(Outcome, Outcome), String> {
        let proto = Proto::from_felix(&b.proto).ok_or_else(|| {
            format!(
                "protocol {:?} is not evaluated (NetworkPolicy ports are TCP, UDP or SCTP)",
                b.proto
            )
        })?;
        let port = b.port.ok_or("the records have no destination port")?;
        let src_labels = b.source_labels.as_ref();
        let dst_labels = b.dest_labels.as_ref();
        let src = flow_end(&b.source, src_labels, b.source_ip)?;
        let dst = flow_end(&b.destination, dst_labels, b.dest_ip)?;
        let eval = |ev: &Evaluator| -> Result<Outcome, String> {
            let out = if b.reporter == "src" {
                let FlowEnd::Pod(s) = src else {
                    return Err(format!(
                        "reported by a {} source: only pods have NetworkPolicies",
                        b.source.endpoint_type
                    ));
                };
                ev.flow_egress(s, dst, None, proto, port)
            } else {
                let FlowEnd::Pod(d) = dst else {
                    return Err(format!(
                        "reported by a {} destination: only pods have NetworkPolicies",
                        b.destination.endpoint_type
                    ));
                };
                ev.flow_ingress(d, src, proto, port)
            };
            match out {
                Outcome::Unknown { missing, policy } => {
                    Err(format!("{}/{}: {missing}", policy.0, policy.1))
                }
                decided => Ok(decided),
            }
        };
        Ok((eval(&self.before)?, eval(&self.after)?))
    }

    /// The reported groups, largest first: changes, then undetermined.
    fn groups(&self) -> (Vec<FlowChange>, Vec<FlowChange>) {
        let mut all: Vec<(&GroupKey, &(u64, u64))> = self.groups.iter().collect();
        all.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
        let (mut changes, mut undetermined) = (Vec::new(), Vec::new());
        for (k, (records, flows)) in all {
            let c = FlowChange {
                change: k.change,
                direction: k.direction.into(),
                source: k.source.clone(),
                destination: k.destination.clone(),
                protocol: k.protocol.clone(),
                port: k.port,
                records: *records,
                flows: *flows,
                detail: k.detail.clone(),
            };
            if k.change == Change::Undetermined {
                undetermined.push(c);
            } else {
                changes.push(c);
            }
        }
        (changes, undetermined)
    }
}

/// One end of a bucket as the evaluator takes it: a pod (`wep`) needs the labels all
/// the bucket's records carry; anything else is external.
fn flow_end<'a>(
    e: &'a FlowEndpoint,
    labels: Option<&'a Labels>,
    ip: Option<IpAddr>,
) -> Result<FlowEnd<'a>, String> {
    if e.endpoint_type == "wep" {
        let labels = labels.ok_or_else(|| {
            "the records of this group do not all carry the same labels".to_string()
        })?;
        Ok(FlowEnd::Pod(FlowPod {
            namespace: &e.namespace,
            labels,
            ip,
            named_ports: None,
        }))
    } else {
        Ok(FlowEnd::External(ip))
    }
}

/// Who decides a verdict, as the response names it.
fn decider(o: &Outcome) -> String {
    match o {
        Outcome::Decided(v) => match &v.decider {
            cattery_netpol::Decider::Profile { .. } => "profile".into(),
            cattery_netpol::Decider::Policy {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
        },
        Outcome::Unknown { .. } => String::new(),
    }
}

/// A composite key part as text (`None` for the null bucket).
fn key_str(key: &Value, name: &str) -> Option<String> {
    match key.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The labels of a bucket's records, when they all carry the same ones: every label
/// value counted in exactly every record, and none left out of the terms.
fn uniform_labels(agg: Option<&Value>, records: u64) -> Option<Labels> {
    let Some(agg) = agg else {
        return Some(Labels::new());
    };
    if agg
        .get("sum_other_doc_count")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0
    {
        return None;
    }
    let mut out = Labels::new();
    for b in agg
        .get("buckets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if b.get("doc_count").and_then(Value::as_u64) != Some(records) {
            return None;
        }
        let kv = b.get("key")?.as_str()?;
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.insert(k.to_string(), v.to_string());
    }
    Some(out)
}

fn parse_bucket(b: &Value) -> Option<Bucket> {
    let key = b.get("key")?;
    let records = b.get("doc_count")?.as_u64()?;
    let endpoint = |t: &str, ns: &str, name: &str| FlowEndpoint {
        endpoint_type: key_str(key, t).unwrap_or_else(|| "-".into()),
        namespace: key_str(key, ns).unwrap_or_else(|| "-".into()),
        name: key_str(key, name).unwrap_or_else(|| "-".into()),
    };
    let port = match key.get("dport") {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|p| u16::try_from(p).ok()),
        _ => None,
    };
    let ip = |name: &str| key_str(key, name).and_then(|s| s.parse::<IpAddr>().ok());
    Some(Bucket {
        reporter: key_str(key, "reporter")?,
        action: key_str(key, "action")?,
        proto: key_str(key, "proto").unwrap_or_else(|| "-".into()),
        port,
        source: endpoint("stype", "sns", "sname"),
        destination: endpoint("dtype", "dns", "dname"),
        source_ip: ip("sip"),
        dest_ip: ip("dip"),
        source_labels: uniform_labels(b.get("sl"), records),
        dest_labels: uniform_labels(b.get("dl"), records),
        records,
        flows: b
            .pointer("/nf/value")
            .and_then(Value::as_f64)
            .map_or(0, |f| f as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_known_only_when_every_record_carries_them() {
        let agg = json!({"sum_other_doc_count": 0, "buckets": [
            {"key": "app=cart", "doc_count": 4}, {"key": "tier=web", "doc_count": 4}]});
        let l = uniform_labels(Some(&agg), 4).unwrap();
        assert_eq!(l.get("app").map(String::as_str), Some("cart"));
        assert_eq!(l.len(), 2);
        // One record lacks tier=web: not uniform.
        assert!(uniform_labels(Some(&agg), 5).is_none());
        let other = json!({"sum_other_doc_count": 1, "buckets": []});
        assert!(uniform_labels(Some(&other), 1).is_none());
        // No labels at all (a network end).
        assert_eq!(
            uniform_labels(Some(&json!({"buckets": []})), 3),
            Some(Labels::new())
        );
    }

    #[test]
    fn since_is_a_bounded_duration() {
        assert_eq!(parse_since("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_since("90m").unwrap(), Duration::from_secs(5_400));
        for bad in ["", "0s", "yesterday", "1000d"] {
            let e = parse_since(bad).unwrap_err();
            assert_eq!(e.0.code, 400, "{bad}");
            assert!(e.0.message.contains("since"), "{}", e.0.message);
        }
        assert!(since_param(Some("since=1h")).is_ok());
        assert!(since_param(Some("until=1h")).is_err());
        assert_eq!(since_param(None).unwrap(), DEFAULT_SINCE);
    }

    #[test]
    fn buckets_parse_with_null_keys() {
        let b = json!({"key": {"reporter": "dst", "action": "allow", "proto": "tcp", "dport": 80,
            "stype": "wep", "sns": "shop", "sname": "frontend-*", "dtype": "wep", "dns": "shop",
            "dname": "cart-*"}, "doc_count": 3, "nf": {"value": 7.0},
            "sl": {"buckets": [{"key": "app=frontend", "doc_count": 3}]},
            "dl": {"buckets": [{"key": "app=cart", "doc_count": 3}]}});
        let b = parse_bucket(&b).unwrap();
        assert_eq!(b.port, Some(80));
        assert_eq!(b.flows, 7);
        assert_eq!(b.source.to_string(), "shop/frontend-*");
        assert!(b.source_ip.is_none());
        let mut r = Replay::new(Evaluator::default(), deny_cart());
        r.add(b);
        assert_eq!(r.counts.changed, 3);
        let (changes, undetermined) = r.groups();
        assert!(undetermined.is_empty());
        assert_eq!(changes[0].change, Change::AllowedToDenied);
        assert_eq!(changes[0].detail, "shop/deny");
        assert_eq!((changes[0].records, changes[0].flows), (3, 7));
    }

    fn deny_cart() -> Evaluator {
        let np =
            NetworkPolicy::from_object(&json!({"metadata": {"namespace": "shop", "name": "deny"},
            "spec": {"podSelector": {"matchLabels": {"app": "cart"}}}}))
            .unwrap();
        Evaluator::new(vec![np], BTreeMap::new())
    }
}
