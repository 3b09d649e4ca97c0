//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`),
//! what kubectl ≥ 1.30 uses by default. SPDY is not implemented.
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout,
//! 2 stderr, 3 error (a `Status` JSON, sent once at the end), 4 resize;
//! v5 adds 255 = "close this channel" (`[255, 0]` is stdin EOF).
//!
//! The "container" runs a tiny fake shell:
//! - `echo ARGS...` prints the arguments joined by spaces and a newline;
//! - `hostname` prints the pod name;
//! - `cat` copies stdin to stdout until stdin is closed;
//! - anything else prints "`<cmd>`: command not found" and exits with 127,
//!   reported as kubelet does (`NonZeroExitCode`, cause `ExitCode`).

use std::sync::Arc;

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::Query;
use crate::resources;
use crate::status::ApiError;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// Exit status of the fake command, rendered on channel 3.
fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=...`
pub async fn handle(
    State(st): State<Arc<AppState>>,
    Path((ns, name)): Path<(String, String)>,
    uri: http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let pods = resources::find("", "v1", "pods").expect("pods are served");
    let pod = match st.store.get(pods, Some(&ns), &name) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let q = Query::parse(uri.query());
    let command = q.all("command");
    if command.is_empty() {
        return ApiError::BadRequest(
            "you must specify at least one command for the container".into(),
        )
        .into_response();
    }
    if let Some(c) = q.get("container").filter(|c| !c.is_empty()) {
        let known = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == *c);
        if !known {
            return ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))
                .into_response();
        }
    }
    let ws = match ws {
        Ok(ws) => ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]),
        Err(_) => {
            return ApiError::BadRequest(
                "exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); \
                 SPDY is not supported by the simulator"
                    .into(),
            )
            .into_response();
        }
    };
    let v5 = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some("v5.channel.k8s.io") => true,
        Some(_) => false,
        None => {
            return ApiError::BadRequest(
                "no supported WebSocket subprotocol offered; the simulator speaks v5.channel.k8s.io and v4.channel.k8s.io"
                    .into(),
            )
            .into_response();
        }
    };
    let session = Session {
        pod: name,
        command,
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        v5,
    };
    let shutdown = st.shutdown.clone();
    ws.on_upgrade(move |socket| async move {
        tokio::select! {
            () = session.run(socket) => {}
            () = shutdown.cancelled() => {}
        }
    })
}

/// How long the simulated process takes to start before it writes anything. A real exec
/// starts a process in the container first (tens of milliseconds); answering at once races
/// client-go, which starts reading the WebSocket before it has registered its streams and
/// drops what arrives first ("Unknown stream id 1, discarding message").
const PROCESS_START: std::time::Duration = std::time::Duration::from_millis(50);

struct Session {
    pod: String,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    v5: bool,
}

async fn send(socket: &mut WebSocket, channel: u8, data: &[u8]) -> bool {
    let mut msg = Vec::with_capacity(data.len() + 1);
    msg.push(channel);
    msg.extend_from_slice(data);
    socket.send(Message::Binary(Bytes::from(msg))).await.is_ok()
}

impl Session {
    async fn out(&self, socket: &mut WebSocket, data: &[u8]) -> bool {
        !self.stdout || send(socket, STDOUT, data).await
    }

    async fn run(self, mut socket: WebSocket) {
        tracing::debug!(pod = %self.pod, command = ?self.command, v5 = self.v5, "exec");
        tokio::time::sleep(PROCESS_START).await;
        let program = self.command[0].as_str();
        let code = match program {
            "echo" => {
                let line = format!("{}\n", self.command[1..].join(" "));
                if !self.out(&mut socket, line.as_bytes()).await {
                    return;
                }
                0
            }
            "hostname" => {
                if !self
                    .out(&mut socket, format!("{}\n", self.pod).as_bytes())
                    .await
                {
                    return;
                }
                0
            }
            "cat" if self.stdin => loop {
                match socket.recv().await {
                    Some(Ok(Message::Binary(b))) => match b.first() {
                        Some(&STDIN) if !self.out(&mut socket, &b[1..]).await => {
                            return;
                        }
                        Some(&CLOSE) if b.get(1) == Some(&STDIN) => break 0,
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            },
            "cat" => 0,
            other => {
                if self.stderr
                    && !send(
                        &mut socket,
                        STDERR,
                        format!("{other}: command not found\n").as_bytes(),
                    )
                    .await
                {
                    return;
                }
                127
            }
        };
        let status = exit_status(&self.command, code);
        if send(&mut socket, ERROR, status.to_string().as_bytes()).await {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
        }
    }
}
