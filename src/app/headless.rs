//! Headless mode: the JSON-lines control protocol on stdin/stdout (docs/HEADLESS.md).
//!
//! [`parse_line`] is pure; [`run`] is the shell that reads stdin, forwards commands to the
//! runtime, and owns stdout (one writer task, so lines never interleave).

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::app::provision;
use crate::app::runtime::{now_secs, Event, Handle, IdentityInfo, MessageView, Paired, Running};

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
    /// `{"cmd":"invite","ttl_secs":N}`
    Invite {
        /// Lifetime in seconds.
        ttl_secs: u64,
    },
    /// `{"cmd":"invites"}`
    Invites,
    /// `{"cmd":"revoke_invite","code":...}`
    RevokeInvite {
        /// The code.
        code: String,
    },
    /// `{"cmd":"accept","code":...}`
    Accept {
        /// The code.
        code: String,
        /// `"replica":true` marks the node as our home node.
        replica: bool,
    },
    /// `{"cmd":"short_code","ttl_secs":N}`
    ShortCode {
        /// Lifetime in seconds.
        ttl_secs: u64,
    },
    /// `{"cmd":"accept_short","code":...,"url":...}`
    AcceptShort {
        /// The short code as typed.
        code: String,
        /// The node's address; default `--node-url`.
        url: Option<String>,
        /// `"replica":true` marks the node as our home node.
        replica: bool,
    },
    /// `{"cmd":"pair_secret","url":...}`
    PairSecret {
        /// The node's address; default `--node-url`.
        url: Option<String>,
        /// `"replica":true` marks the node as our home node.
        replica: bool,
    },
    /// `{"cmd":"card"}`
    Card,
    /// `{"cmd":"add_contact","card":...}`
    AddContact {
        /// The card code.
        card: String,
    },
    /// `{"cmd":"channels"}`
    Channels,
    /// `{"cmd":"remove_contact","person_id":...}`
    RemoveContact {
        /// Person id.
        person_id: String,
    },
    /// `{"cmd":"create_channel","name":...,"members":[...]}`
    CreateChannel {
        /// Name.
        name: String,
        /// Member ids.
        members: Vec<String>,
    },
    /// `{"cmd":"add_member"|"remove_member","channel":...,"person_id":...}`
    ChangeMembers {
        /// Channel id.
        channel: String,
        /// Person id.
        person_id: String,
        /// Add or remove.
        add: bool,
    },
    /// `{"cmd":"send","channel":...,"text":...}`
    Send {
        /// Channel id.
        channel: String,
        /// Text.
        text: String,
    },
    /// `{"cmd":"history","channel":...,"limit":N}`
    History {
        /// Channel id.
        channel: String,
        /// How many (default 50).
        limit: usize,
    },
    /// `{"cmd":"stats"}`
    Stats,
    /// `{"cmd":"reconnect"}`
    Reconnect,
    /// `{"cmd":"set_display_name","name":...}`
    SetDisplayName {
        /// The name.
        name: String,
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
    let ttl_arg = |default: u64, max: u64| -> Result<u64, BadLine> {
        match obj.get("ttl_secs") {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad(
                    id.clone(),
                    "bad_argument",
                    format!("`ttl_secs` must be a whole number of seconds from 1 to {max}"),
                )),
            },
        }
    };
    let optional_string = |name: &str| -> Result<Option<String>, BadLine> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            _ => Err(bad(
                id.clone(),
                "bad_argument",
                format!("`{cmd}`: `{name}` must be a non-empty string when given"),
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
        "invite" => Request::Invite {
            ttl_secs: ttl_arg(
                crate::net::pairing::DEFAULT_INVITE_TTL_SECS,
                crate::net::pairing::MAX_INVITE_TTL_SECS,
            )?,
        },
        "short_code" => Request::ShortCode {
            ttl_secs: ttl_arg(
                crate::net::pake::DEFAULT_CODE_TTL_SECS,
                crate::net::pake::MAX_CODE_TTL_SECS,
            )?,
        },
        "accept_short" => Request::AcceptShort {
            code: string_arg("code")?,
            url: optional_string("url")?,
            replica: obj.get("replica").and_then(Value::as_bool).unwrap_or(false),
        },
        "pair_secret" => Request::PairSecret {
            url: optional_string("url")?,
            replica: obj.get("replica").and_then(Value::as_bool).unwrap_or(false),
        },
        "invites" => Request::Invites,
        "revoke_invite" => Request::RevokeInvite {
            code: string_arg("code")?,
        },
        "accept" => Request::Accept {
            code: match obj.get("qr_image") {
                // A screenshot of the QR code instead of the text code.
                Some(Value::String(path)) => {
                    crate::net::invite::scan_file(std::path::Path::new(path)).map_err(|e| {
                        bad(
                            id.clone(),
                            match e {
                                crate::net::invite::ScanError::Unreadable(_) => "qr_unreadable",
                                crate::net::invite::ScanError::NoQr => "qr_not_found",
                                crate::net::invite::ScanError::NotACode(_) => "invalid_code",
                            },
                            e.to_string(),
                        )
                    })?
                }
                _ => string_arg("code")?,
            },
            replica: obj.get("replica").and_then(Value::as_bool).unwrap_or(false),
        },
        "card" => Request::Card,
        "add_contact" => Request::AddContact {
            card: string_arg("card")?,
        },
        "channels" => Request::Channels,
        "remove_contact" => Request::RemoveContact {
            person_id: string_arg("person_id")?,
        },
        "create_channel" => Request::CreateChannel {
            name: string_arg("name")?,
            members: match obj.get("members") {
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => {
                    return Err(bad(
                        id,
                        "bad_argument",
                        "`create_channel` needs `members`: an array of person ids".into(),
                    ))
                }
            },
        },
        "add_member" | "remove_member" => Request::ChangeMembers {
            channel: string_arg("channel")?,
            person_id: string_arg("person_id")?,
            add: cmd == "add_member",
        },
        "send" => Request::Send {
            channel: string_arg("channel")?,
            text: string_arg("text")?,
        },
        "history" => Request::History {
            channel: string_arg("channel")?,
            limit: match obj.get("limit") {
                None | Some(Value::Null) => 50,
                Some(v) => match v.as_u64() {
                    Some(n) if n <= 1_000_000 => n as usize,
                    _ => {
                        return Err(bad(
                            id,
                            "bad_argument",
                            "`limit` must be a whole number up to 1000000".into(),
                        ))
                    }
                },
            },
        },
        "stats" => Request::Stats,
        "reconnect" => Request::Reconnect,
        "set_display_name" => Request::SetDisplayName {
            name: string_arg("name")?,
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

fn message_fields(m: &MessageView) -> Value {
    json!({
        "channel": m.channel,
        "entry": m.entry,
        "author": m.author,
        "author_name": m.author_name,
        "ts": m.ts,
        "text": m.text,
        "kind": m.kind,
    })
}

fn paired_fields(p: &Paired, via: &str) -> Value {
    json!({"person_id": p.person_id, "name": p.name, "via": via, "verification": p.verification})
}

fn event_to_line(e: &Event) -> String {
    match e {
        Event::ContactAdded {
            person_id,
            name,
            via,
            verification,
        } => event_line(
            "contact_added",
            None,
            json!({"person_id": person_id, "name": name, "via": via, "verification": verification}),
        ),
        Event::EndpointsChanged { person_id, urls } => event_line(
            "endpoints_changed",
            None,
            json!({"person_id": person_id, "urls": urls}),
        ),
        Event::Error { kind, message } => error_line(None, kind, message),
        Event::Message(m) => event_line("message", None, message_fields(m)),
        Event::Delivered { entries } => {
            event_line("delivered", None, json!({ "entries": entries }))
        }
        Event::Synced { person_id } => {
            event_line("synced", None, json!({ "person_id": person_id }))
        }
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
                            "display_name": c.contact.profile.as_ref().map(|p| &p.name),
                            "via": c.contact.via,
                            "replica": c.contact.replica,
                            "endpoints": c.contact.endpoints.iter().map(|e| &e.url).collect::<Vec<_>>(),
                            "state": c.state.as_str(),
                            "last_error": c.last_error,
                            "last_seen": c.last_seen,
                            "verification": c.verification,
                            "behind": c.behind,
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
        Request::Invite { ttl_secs } => match handle.invite(ttl_secs).await {
            Ok(i) => event_line(
                "invite",
                id.as_ref(),
                json!({"code": i.code, "expires_at": i.expires_at}),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Invites => match handle.invites().await {
            Ok(list) => {
                let now = now_secs();
                let invites: Vec<Value> = list
                    .iter()
                    .map(|r| {
                        json!({
                            "code": r.code,
                            "created_at": r.created_at,
                            "expires_at": r.expires_at,
                            "status": r.status_at(now),
                        })
                    })
                    .collect();
                event_line("invites", id.as_ref(), json!({ "invites": invites }))
            }
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::RevokeInvite { code } => match handle.revoke_invite(code).await {
            Ok(r) => event_line(
                "invite_revoked",
                id.as_ref(),
                json!({"code": r.code, "status": r.status_at(now_secs())}),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Accept { code, replica } => match handle.accept(code, "invite", replica).await {
            Ok(p) => event_line("contact_added", id.as_ref(), paired_fields(&p, "invite")),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::ShortCode { ttl_secs } => match handle.short_code(ttl_secs).await {
            Ok(c) => event_line(
                "short_code",
                id.as_ref(),
                json!({"code": c.code, "expires_at": c.expires_at}),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::AcceptShort { code, url, replica } => {
            match handle.accept_pake(Some(code), url, replica).await {
                Ok(p) => event_line(
                    "contact_added",
                    id.as_ref(),
                    paired_fields(&p, "short_code"),
                ),
                Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
            }
        }
        Request::PairSecret { url, replica } => {
            match handle.accept_pake(None, url, replica).await {
                Ok(p) => event_line(
                    "contact_added",
                    id.as_ref(),
                    paired_fields(&p, "trust_secret"),
                ),
                Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
            }
        }
        Request::Card => match handle.card().await {
            Ok(c) => event_line("card", id.as_ref(), json!({ "card": c })),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::AddContact { card } => match handle.add_contact(card).await {
            Ok(p) => event_line("contact_added", id.as_ref(), paired_fields(&p, "card")),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::RemoveContact { person_id } => {
            match handle.remove_contact(person_id.clone()).await {
                Ok(true) => event_line(
                    "contact_removed",
                    id.as_ref(),
                    json!({ "person_id": person_id }),
                ),
                Ok(false) => error_line(
                    id.as_ref(),
                    "unknown_contact",
                    "no contact with this person id",
                ),
                Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
            }
        }
        Request::Channels => match handle.channels().await {
            Ok(list) => {
                let channels: Vec<Value> = list
                    .iter()
                    .map(|(c, unread)| json!({"id": c.id, "name": c.name, "members": c.members, "unread": unread}))
                    .collect();
                event_line("channels", id.as_ref(), json!({ "channels": channels }))
            }
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::CreateChannel { name, members } => {
            match handle.create_channel(name, members).await {
                // The contract names the channel id `id`, which clashes with the echoed
                // request id; `channel` always carries it (docs/HEADLESS.md).
                Ok(ch) => event_line(
                    "channel_created",
                    id.as_ref(),
                    json!({ "id": ch, "channel": ch }),
                ),
                Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
            }
        }
        Request::ChangeMembers {
            channel,
            person_id,
            add,
        } => match handle.change_members(channel.clone(), person_id, add).await {
            Ok(members) => event_line(
                "members_changed",
                id.as_ref(),
                json!({ "channel": channel, "members": members }),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Send { channel, text } => match handle.send(channel.clone(), text).await {
            Ok(entry) => event_line(
                "sent",
                id.as_ref(),
                json!({ "channel": channel, "entry": entry }),
            ),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::History { channel, limit } => match handle.history(channel.clone(), limit).await {
            Ok(list) => {
                let messages: Vec<Value> = list.iter().map(message_fields).collect();
                event_line(
                    "history",
                    id.as_ref(),
                    json!({ "channel": channel, "messages": messages }),
                )
            }
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Reconnect => match handle.reconnect().await {
            Some(n) => event_line("reconnecting", id.as_ref(), json!({ "links": n })),
            None => error_line(
                id.as_ref(),
                "shutting_down",
                "the instance is shutting down",
            ),
        },
        Request::Stats => match handle.stats().await {
            Some(s) => event_line(
                "stats",
                id.as_ref(),
                json!({
                    "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "entries": s.entries,
                    "received": s.received, "duplicates": s.duplicates, "invalid": s.invalid,
                    "links": s.links,
                }),
            ),
            None => error_line(
                id.as_ref(),
                "shutting_down",
                "the instance is shutting down",
            ),
        },
        Request::SetDisplayName { name } => match handle.set_display_name(name).await {
            Ok(v) => event_line("profile_updated", id.as_ref(), json!({ "version": v })),
            Err(e) => error_line(id.as_ref(), e.kind(), &e.to_string()),
        },
        Request::Quit => return,
    };
    let _ = out.send(line).await;
}

/// What `--provision-node` asks of the shell.
#[derive(Clone, Debug)]
pub struct ProvisionCfg {
    /// The client's data dir (the node lives beneath it).
    pub client_dir: std::path::PathBuf,
    /// Leave the node running after we quit.
    pub keep: bool,
}

/// Provision the node and describe the outcome as output lines.
pub async fn provision_lines(
    handle: &Handle,
    p: &ProvisionCfg,
) -> (Vec<String>, Option<provision::NodeGuard>) {
    match provision::provision(handle, &p.client_dir, p.keep).await {
        Ok(mut r) => {
            let mut lines = Vec::new();
            if let Some(v) = &r.verification {
                lines.push(event_line(
                    "contact_added",
                    None,
                    json!({"person_id": r.person_id, "name": Value::Null, "via": "provision", "verification": v}),
                ));
            }
            lines.push(event_line(
                "provisioned",
                None,
                json!({"person_id": r.person_id, "endpoint": r.endpoint, "reused": r.reused}),
            ));
            (lines, r.guard.take())
        }
        Err(e) => (
            vec![error_line(None, "provision_failed", &e.to_string())],
            None,
        ),
    }
}

async fn node_exit(guard: &mut Option<provision::NodeGuard>) -> String {
    match guard {
        Some(g) => {
            let status = (&mut g.exited).await;
            *guard = None;
            let how = match status {
                Ok(Ok(s)) => s.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "unknown status".into(),
            };
            format!("the provisioned node exited ({how}); restart the client to start it again")
        }
        None => std::future::pending().await,
    }
}

/// Run headless until `quit`, SIGTERM/SIGINT, or (unless `detach`) end of stdin.
pub async fn run(
    running: Running,
    detach: bool,
    provision: Option<ProvisionCfg>,
) -> std::io::Result<()> {
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

    let mut guard = None;
    if let Some(p) = &provision {
        let (out, g) = provision_lines(&handle, p).await;
        for l in out {
            let _ = out_tx.send(l).await;
        }
        guard = g;
    }
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
            msg = node_exit(&mut guard) => {
                let _ = out_tx.send(error_line(None, "node_exited", &msg)).await;
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if line.trim().is_empty() { continue; }
                    if line.len() > MAX_LINE {
                        let _ = out_tx.send(error_line(None, "line_too_long", "the line exceeds 1 MiB")).await;
                        continue;
                    }
                    match parse_line(&line) {
                        Ok((_, Request::Quit)) => break,
                        // Commands run in the order they arrive (a `send` after a `send`
                        // is written after it); only the ones that wait on the network
                        // answer later, so they never hold up the rest.
                        Ok((id, req @ (Request::Connect { .. } | Request::Accept { .. } | Request::AcceptShort { .. } | Request::PairSecret { .. }))) => {
                            tokio::spawn(answer(handle.clone(), id, req, out_tx.clone()));
                        }
                        Ok((id, req)) => answer(handle.clone(), id, req, out_tx.clone()).await,
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
    if let Some(g) = guard {
        g.stop().await;
    }
    drop(out_tx);
    drop(events);
    let _ = writer.await;
    Ok(())
}
