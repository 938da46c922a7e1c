//! Headless mode: the JSON-lines control protocol on stdin/stdout (docs/HEADLESS.md).
//!
//! [`parse_line`] is pure; [`run`] is the shell that reads stdin, forwards commands to the
//! runtime, and owns stdout (one writer task, so lines never interleave).

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::app::runtime::{Event, Handle, IdentityInfo, Running};

/// Capacity of the stdout line queue.
pub const OUTPUT_CAPACITY: usize = 1024;
/// Longest accepted input line, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `{"cmd":"identity"}`
    Identity,
    /// `{"cmd":"quit"}`
    Quit,
    /// `{"cmd":"contacts"}`
    Contacts,
    /// `{"cmd":"connect","url":...}`
    Connect {
        /// `ws://host:port`
        url: String,
    },
}

/// A line that cannot be executed: its `id` (if any could be read), kind and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// The `id` field, if the line was an object with one.
    pub id: Option<Value>,
    /// snake_case kind.
    pub kind: &'static str,
    /// Human sentence.
    pub message: String,
}

/// Parse one input line into `(id, request)`.
pub fn parse_line(line: &str) -> Result<(Option<Value>, Request), BadLine> {
    let bad = |id: Option<Value>, kind, message: String| BadLine { id, kind, message };
    let v: Value = serde_json::from_str(line).map_err(|e| {
        bad(
            None,
            "malformed_json",
            format!("the line is not valid JSON ({e}); send one JSON object per line"),
        )
    })?;
    let Value::Object(obj) = v else {
        return Err(bad(
            None,
            "malformed_json",
            "the line is JSON but not an object; send {\"cmd\":...}".into(),
        ));
    };
    let id = obj.get("id").cloned();
    let cmd = match obj.get("cmd") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(bad(id, "bad_argument", "`cmd` must be a string".into()));
        }
        None => {
            return Err(bad(
                id,
                "missing_cmd",
                "the object has no `cmd` field; e.g. {\"cmd\":\"identity\"}".into(),
            ))
        }
    };
    let string_arg = |name: &str| -> Result<String, BadLine> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(
                id.clone(),
                "bad_argument",
                format!("`{cmd}` needs a non-empty string field `{name}`"),
            )),
        }
    };
    let req = match cmd {
        "identity" => Request::Identity,
        "quit" => Request::Quit,
        "contacts" => Request::Contacts,
        "connect" => Request::Connect {
            url: string_arg("url")?,
        },
        other => {
            return Err(bad(
                id,
                "unknown_command",
                format!("unknown command `{other}`; see docs/HEADLESS.md for the list"),
            ))
        }
    };
    Ok((id, req))
}

/// Build an output line: `{"event":name, ...fields, "id":id}`.
pub fn event_line(name: &str, id: Option<&Value>, fields: Value) -> String {
    let mut m = Map::new();
    m.insert("event".into(), Value::String(name.into()));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m).to_string()
}

/// The `error` event line.
pub fn error_line(id: Option<&Value>, kind: &str, message: &str) -> String {
    event_line("error", id, json!({"kind": kind, "message": message}))
}

fn identity_fields(i: &IdentityInfo) -> Value {
    json!({
        "role": i.role.as_str(),
        "name": i.name,
        "person_id": i.person_id,
        "instance_id": i.instance_id,
        "endpoint": i.endpoint,
    })
}

fn event_to_line(e: &Event) -> String {
    match e {
        Event::Connected { person_id, name } => event_line(
            "connected",
            None,
            json!({"person_id": person_id, "name": name}),
        ),
        Event::Disconnected { person_id, reason } => event_line(
            "disconnected",
            None,
            json!({"person_id": person_id, "reason": reason}),
        ),
    }
}

async fn answer(handle: Handle, id: Option<Value>, req: Request, out: mpsc::Sender<String>) {
    let line = match req {
        Request::Identity => match handle.identity().await {
            Some(i) => event_line("identity", id.as_ref(), identity_fields(&i)),
            None => error_line(
                id.as_ref(),
                "shutting_down",
                "the instance is shutting down",
            ),
        },
        Request::Contacts => match handle.contacts().await {
            Ok(list) => {
                let contacts: Vec<Value> = list
                    .iter()
                    .map(|c| {
                        json!({
                            "person_id": c.contact.person_id(),
                            "name": c.contact.person.name,
                            "endpoints": c.contact.endpoints.iter().map(|e| &e.url).collect::<Vec<_>>(),
                            "state": c.state.as_str(),
                            "last_error": c.last_error,
                            "last_seen": c.last_seen,
                        })
                    })
                    .collect();
                event_line("contacts", id.as_ref(), json!({ "contacts": contacts }))
            }
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Connect { url } => match handle.connect(url).await {
            Ok(peer) => event_line(
                "connect_ok",
                id.as_ref(),
                json!({"person_id": peer.person_id, "name": peer.person.name}),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Quit => return,
    };
    let _ = out.send(line).await;
}

/// Run headless until `quit`, SIGTERM/SIGINT, or (unless `detach`) end of stdin.
pub async fn run(running: Running, detach: bool) -> std::io::Result<()> {
    let Running {
        handle,
        mut events,
        info,
        done,
    } = running;
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTPUT_CAPACITY);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let _ = out_tx
        .send(event_line("ready", None, identity_fields(&info)))
        .await;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        #[cfg(unix)]
        let term = sigterm.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = term => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            Some(e) = events.recv() => { let _ = out_tx.send(event_to_line(&e)).await; }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if line.trim().is_empty() { continue; }
                    if line.len() > MAX_LINE {
                        let _ = out_tx.send(error_line(None, "line_too_long", "the line exceeds 1 MiB")).await;
                        continue;
                    }
                    match parse_line(&line) {
                        Ok((_, Request::Quit)) => break,
                        Ok((id, req)) => {
                            tokio::spawn(answer(handle.clone(), id, req, out_tx.clone()));
                        }
                        Err(b) => { let _ = out_tx.send(error_line(b.id.as_ref(), b.kind, &b.message)).await; }
                    }
                }
                Ok(None) | Err(_) => {
                    if detach { stdin_open = false; } else { tracing::info!("stdin closed: shutting down"); break; }
                }
            },
        }
    }
    handle.shutdown();
    let _ = done.await;
    drop(out_tx);
    drop(events);
    let _ = writer.await;
    Ok(())
}
