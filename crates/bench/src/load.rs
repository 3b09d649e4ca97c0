//! Load generation: concurrent small GETs (rate and latency) and one large streamed GET.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cattery_tunnel::tls::ServerRoots;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::api::error_chain;

/// No single small request may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Latencies kept per worker; beyond this a worker still counts requests but keeps no
/// more samples (bounds memory on very fast machines or long runs).
const MAX_SAMPLES_PER_WORKER: usize = 2_000_000;

/// The HTTP client used for one path.
pub type BenchClient<C> = Client<C, Empty<Bytes>>;

/// The client type of every path (plain HTTP goes through the same connector).
pub type HttpsClient = BenchClient<hyper_rustls::HttpsConnector<HttpConnector>>;

/// HTTP/1.1 keep-alive pool toward a plain-HTTP endpoint (the simulator without TLS).
pub fn http1_client() -> anyhow::Result<HttpsClient> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        // Never used: the URLs are http:// (the connector only wraps plain TCP then).
        .with_tls_config(cattery_tunnel::tls::https_client_config(&ServerRoots::Ca(
            vec![],
        ))?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// Receive windows of kubectl's HTTP/2 transport (Go's `x/net/http2` defaults: 4 MiB per
/// stream, 1 GiB per connection; frames of at most 16 KiB).
const CLIENT_STREAM_WINDOW: u32 = 4 << 20;
const CLIENT_CONN_WINDOW: u32 = 1 << 30;

/// HTTP/2 over TLS, as kubectl talks to a kube-apiserver or to the management plane,
/// trusting the CA in `ca_pem`: one connection carries every request as a stream, with the
/// flow-control windows kubectl (client-go) uses.
pub fn http2_client(ca_pem: &str) -> anyhow::Result<HttpsClient> {
    let roots = ServerRoots::Ca(cattery_tunnel::pem::certs("the server's CA", ca_pem)?);
    let tls = cattery_tunnel::tls::https_client_config(&roots)?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .http2_initial_stream_window_size(CLIENT_STREAM_WINDOW)
        .http2_initial_connection_window_size(CLIENT_CONN_WINDOW)
        .build(connector))
}

/// One GET target.
#[derive(Clone)]
pub struct Target {
    /// Full URL.
    pub url: String,
    /// `Authorization` header value, if any.
    pub authorization: Option<String>,
}

impl Target {
    fn request(&self) -> anyhow::Result<http::Request<Empty<Bytes>>> {
        let mut b = http::Request::get(&self.url).header(http::header::ACCEPT, "application/json");
        if let Some(a) = &self.authorization {
            b = b.header(http::header::AUTHORIZATION, a);
        }
        Ok(b.body(Empty::new())?)
    }
}

/// Result of a rate/latency run.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Successful requests completed inside the measured window.
    pub ok: u64,
    /// Successful requests including the warm-up (what the CPU time was spent on).
    pub all_ok: u64,
    /// Failed requests (error, timeout or non-2xx) started inside the measured window.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub window: Duration,
    /// Sorted latencies, µs.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Latency quantile `q` (0..=1), µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i])
    }
}

#[derive(Default)]
struct WorkerResult {
    ok: u64,
    all_ok: u64,
    errors: u64,
    first_error: Option<String>,
    samples: Vec<u32>,
}

async fn get_once<C>(client: &BenchClient<C>, target: &Target) -> anyhow::Result<()>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let res = client
        .request(target.request()?)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(())
}

/// `concurrency` workers each send sequential GETs for `warmup + duration`; requests that
/// start after the warm-up and finish inside the window are measured.
pub async fn run_load<C>(
    client: &BenchClient<C>,
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    // Fail fast, with the reason, if the target does not answer at all.
    tokio::time::timeout(REQUEST_TIMEOUT, get_once(client, target))
        .await
        .with_context(|| format!("GET {}: no answer within {REQUEST_TIMEOUT:?}", target.url))?
        .with_context(|| format!("GET {}", target.url))?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, target) = (client.clone(), target.clone());
        workers.spawn(async move {
            let mut r = WorkerResult::default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let outcome =
                    match tokio::time::timeout(REQUEST_TIMEOUT, get_once(&client, &target)).await {
                        Ok(x) => x,
                        Err(_) => Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
                    };
                let t1 = Instant::now();
                if outcome.is_ok() {
                    r.all_ok += 1;
                }
                if t0 < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) if t1 <= end => {
                        r.ok += 1;
                        if r.samples.len() < MAX_SAMPLES_PER_WORKER {
                            let us = (t1 - t0).as_micros().min(u128::from(u32::MAX)) as u32;
                            r.samples.push(us);
                        }
                    }
                    Ok(()) => {}
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            r
        });
    }
    let mut total = LoadResult {
        window: duration,
        ..Default::default()
    };
    while let Some(r) = workers.join_next().await {
        let r = r.context("a load worker panicked")?;
        total.ok += r.ok;
        total.all_ok += r.all_ok;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latencies_us.extend(r.samples);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// Result of one streamed download.
#[derive(Clone, Copy, Debug)]
pub struct StreamResult {
    /// Bytes received.
    pub bytes: u64,
    /// From sending the request to the last byte.
    pub elapsed: Duration,
}

impl StreamResult {
    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Downloads `size` bytes from `target` (a `/_sim/bytes?size=…` URL), discarding them.
pub async fn run_stream<C>(
    client: &BenchClient<C>,
    target: &Target,
    size: u64,
) -> anyhow::Result<StreamResult>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    // Generous: a minute plus 16 MiB/s, far below anything loopback should do.
    let limit = Duration::from_secs(60) + Duration::from_secs(size / (16 << 20));
    let started = Instant::now();
    let (client, url, request) = (client.clone(), target.url.clone(), target.request()?);
    // Read the body in a task of the runtime, as the request workers do: awaited inline it
    // would run on the thread that blocks on the bench (not a runtime worker), and every
    // DATA frame the connection task receives would wake that thread across threads.
    let fut = tokio::spawn(async move {
        let res = client
            .request(request)
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
        let status = res.status();
        let mut body = res.into_body();
        if !status.is_success() {
            let b = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            bail!(
                "{status}: {}",
                String::from_utf8_lossy(&b[..b.len().min(200)])
            );
        }
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| anyhow::anyhow!("after {n} bytes: {e}"))?;
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
            }
        }
        Ok(n)
    });
    let abort = fut.abort_handle();
    let bytes = match tokio::time::timeout(limit, fut).await {
        Ok(joined) => joined
            .context("the stream reader panicked")?
            .with_context(|| format!("GET {url}"))?,
        Err(_) => {
            abort.abort();
            bail!("GET {url}: not finished within {limit:?}");
        }
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(
        bytes == size,
        "GET {}: received {bytes} bytes, expected {size}",
        target.url
    );
    Ok(StreamResult { bytes, elapsed })
}
