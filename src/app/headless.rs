//! Headless mode: the shell of the JSON-lines control protocol on stdin/stdout
//! (docs/HEADLESS.md). The protocol's types and parsing are in [`crate::app::control`];
//! this module reads stdin, forwards commands to the runtime, and owns stdout (one writer
//! task, so lines never interleave).

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::app::control::{
    parse_line, ChannelJson, ContactJson, Event, IdentityJson, InviteJson, MessageJson, Reply,
    Request, DEFAULT_HISTORY_LIMIT,
};
use crate::app::provision;
use crate::app::runtime::{now_secs, CommandError, Handle, Running};
use crate::domain::{invitation, short_code};
use crate::domain::{ErrorKind, Via};

/// Capacity of the stdout line queue.
pub const OUTPUT_CAPACITY: usize = 1024;
/// Longest accepted input line, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// One line read from stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit, as bytes (not yet known to be UTF-8).
    Bytes(Vec<u8>),
    /// A line over [`MAX_LINE`]; its bytes were read and dropped.
    TooLong,
}

/// Reads lines as bytes, holding at most `max` bytes of one: the rest of a longer line is
/// read and discarded, so memory stays bounded whatever arrives.
///
/// Cancellation-safe (it runs inside `select!`): a partly read line is kept in the reader,
/// not in the future, so a branch that wins in the middle of a line loses nothing.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    too_long: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: Vec::new(),
            too_long: false,
        }
    }

    /// The next line; `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                let pending = !self.buf.is_empty() || self.too_long;
                return Ok(pending.then(|| self.take()));
            }
            let (take, end) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !self.too_long && self.buf.len() + take <= self.max {
                self.buf.extend_from_slice(&chunk[..take]);
            } else {
                self.too_long = true;
                self.buf = Vec::new();
            }
            self.inner.consume(take + usize::from(end));
            if end {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> Line {
        let buf = std::mem::take(&mut self.buf);
        if std::mem::take(&mut self.too_long) {
            Line::TooLong
        } else {
            Line::Bytes(buf)
        }
    }
}

/// What one input line asks for.
enum Input {
    /// Nothing (a blank line).
    Blank,
    /// A command to run.
    Command(Option<Value>, Request),
    /// An answer without running anything (a bad line).
    Answer(Reply),
}

fn classify(line: Line) -> Input {
    let bytes = match line {
        Line::TooLong => {
            let msg = format!("the line exceeds {} MiB", MAX_LINE >> 20);
            return Input::Answer(Reply::unsolicited(Event::error(
                ErrorKind::LineTooLong,
                msg,
            )));
        }
        Line::Bytes(b) => b,
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        let msg = "the line is not UTF-8 text; send one JSON object per line in UTF-8";
        return Input::Answer(Reply::unsolicited(Event::error(
            ErrorKind::MalformedJson,
            msg,
        )));
    };
    if text.trim().is_empty() {
        return Input::Blank;
    }
    match parse_line(text) {
        Ok((id, req)) => Input::Command(id, req),
        Err(b) => Input::Answer(Reply::new(Event::error(b.kind, b.message), b.id)),
    }
}

fn paired(p: crate::app::runtime::Paired, via: Via) -> Event {
    Event::ContactAdded {
        person_id: p.person_id,
        name: Some(p.name),
        via,
        verification: p.verification,
    }
}

fn gone<T>(v: Option<T>) -> Result<T, CommandError> {
    v.ok_or(CommandError::ShuttingDown)
}

/// Run one command against the runtime: its answer, or the error to report.
async fn execute(handle: &Handle, req: Request) -> Result<Event, CommandError> {
    match req {
        Request::Connect { .. }
        | Request::Invite { .. }
        | Request::Invites
        | Request::RevokeInvite { .. }
        | Request::Accept { .. }
        | Request::ShortCode { .. }
        | Request::AcceptShort { .. }
        | Request::PairSecret { .. }
        | Request::Card
        | Request::AddContact { .. } => execute_pairing(handle, req).await,
        other => execute_data(handle, other).await,
    }
}

/// Identity, contacts, channels, messages and counters.
async fn execute_data(handle: &Handle, req: Request) -> Result<Event, CommandError> {
    Ok(match req {
        Request::Identity => Event::Identity(IdentityJson::from(&gone(handle.identity().await)?)),
        Request::Contacts => Event::Contacts {
            contacts: handle
                .contacts()
                .await?
                .iter()
                .map(ContactJson::from)
                .collect(),
        },
        Request::RemoveContact { person_id } => {
            if !handle.remove_contact(person_id.to_string()).await? {
                return Err(CommandError::UnknownContact);
            }
            Event::ContactRemoved {
                person_id: person_id.into(),
            }
        }
        Request::Channels => Event::Channels {
            channels: handle
                .channels()
                .await?
                .into_iter()
                .map(|(c, unread)| ChannelJson {
                    id: c.id,
                    name: c.name,
                    members: c.members,
                    unread,
                })
                .collect(),
        },
        Request::CreateChannel { name, members } => Event::ChannelCreated {
            channel: handle
                .create_channel(name.0, members.into_iter().map(String::from).collect())
                .await?,
        },
        Request::AddMember { channel, person_id } => {
            members(handle, channel.into(), person_id.into(), true).await?
        }
        Request::RemoveMember { channel, person_id } => {
            members(handle, channel.into(), person_id.into(), false).await?
        }
        Request::Send { channel, text } => Event::Sent {
            entry: handle.send(channel.to_string(), text.0).await?,
            channel: channel.into(),
        },
        Request::History { channel, limit } => {
            let limit = limit.map_or(DEFAULT_HISTORY_LIMIT, |n| n as usize);
            let list = handle.history(channel.to_string(), limit).await?;
            Event::History {
                channel: channel.into(),
                messages: list.iter().map(MessageJson::from).collect(),
            }
        }
        Request::Reconnect => Event::Reconnecting {
            links: gone(handle.reconnect().await)?,
        },
        Request::Stats => {
            let s = gone(handle.stats().await)?;
            Event::Stats {
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                entries: s.entries,
                received: s.received,
                duplicates: s.duplicates,
                invalid: s.invalid,
                links: s.links,
            }
        }
        Request::Endpoints => {
            let (me, contacts) = crate::app::control::netjson_parts(&handle.endpoints().await?);
            Event::Endpoints { me, contacts }
        }
        Request::SetDisplayName { name } => Event::ProfileUpdated {
            version: handle.set_display_name(name.0).await?,
        },
        Request::Quit => unreachable!("invariant: the shell handles quit before executing"),
        other => unreachable!("invariant: execute routes {other:?} to execute_pairing"),
    })
}

/// Pairing: dialing, invitations, short codes, the trust secret, cards.
async fn execute_pairing(handle: &Handle, req: Request) -> Result<Event, CommandError> {
    Ok(match req {
        Request::Connect { url } => {
            let peer = handle.connect(url.0).await?;
            Event::ConnectOk {
                person_id: peer.person_id.to_string(),
                name: peer.person.name,
            }
        }
        Request::Invite { ttl_secs } => {
            let ttl = ttl_secs.unwrap_or(invitation::DEFAULT_INVITE_TTL_SECS);
            let i = handle.invite(ttl).await?;
            Event::Invite {
                code: i.code,
                expires_at: i.expires_at,
                reach: i.reach.as_str(),
            }
        }
        Request::Invites => {
            let now = now_secs();
            let invites = handle.invites().await?;
            let invites = invites.iter().map(|r| InviteJson {
                code: r.code.clone(),
                created_at: r.created_at,
                expires_at: r.expires_at,
                status: r.status_at(now),
            });
            Event::Invites {
                invites: invites.collect(),
            }
        }
        Request::RevokeInvite { code } => {
            let r = handle.revoke_invite(code.0).await?;
            Event::InviteRevoked {
                status: r.status_at(now_secs()),
                code: r.code,
            }
        }
        Request::Accept {
            code,
            qr_image,
            replica,
        } => {
            let code = match (qr_image, code) {
                (Some(path), _) => scan_qr(&path.0)?,
                (None, Some(code)) => code.0,
                (None, None) => unreachable!("invariant: parse_line checks accept has a code"),
            };
            paired(
                handle.accept(code, Via::Invite, replica).await?,
                Via::Invite,
            )
        }
        Request::ShortCode { ttl_secs } => {
            let ttl = ttl_secs.unwrap_or(short_code::DEFAULT_CODE_TTL_SECS);
            let c = handle.short_code(ttl).await?;
            Event::ShortCode {
                code: c.code,
                expires_at: c.expires_at,
                url: c.url,
            }
        }
        Request::AcceptShort { code, url, replica } => {
            let p = handle.accept_pake(Some(code.0), url.map(|u| u.0), replica);
            paired(p.await?, Via::ShortCode)
        }
        Request::PairSecret { url, replica } => {
            let p = handle.accept_pake(None, url.map(|u| u.0), replica);
            paired(p.await?, Via::TrustSecret)
        }
        Request::Card => Event::Card {
            card: handle.card().await?,
        },
        Request::AddContact { card } => paired(handle.add_contact(card.0).await?, Via::Card),
        other => unreachable!("invariant: execute routes {other:?} to execute_data"),
    })
}

async fn members(
    handle: &Handle,
    channel: String,
    person_id: String,
    add: bool,
) -> Result<Event, CommandError> {
    let members = handle
        .change_members(channel.clone(), person_id, add)
        .await?;
    Ok(Event::MembersChanged { channel, members })
}

/// A screenshot of a QR code, read as the code it holds.
fn scan_qr(path: &str) -> Result<String, CommandError> {
    crate::app::scan::scan_file(std::path::Path::new(path)).map_err(CommandError::Scan)
}

/// Answer one command on `out`.
async fn answer(handle: Handle, id: Option<Value>, req: Request, out: mpsc::Sender<String>) {
    let event = match execute(&handle, req).await {
        Ok(e) => e,
        Err(e) => Event::error(e.kind(), e.to_string()),
    };
    let _ = out.send(Reply::new(event, id).to_line()).await;
}

pub use provision::ProvisionCfg;

/// Provision the node and describe the outcome as output lines.
pub async fn provision_lines(
    handle: &Handle,
    p: &ProvisionCfg,
) -> (Vec<String>, Option<provision::NodeGuard>) {
    match provision::provision(handle, p).await {
        Ok(mut r) => {
            let mut events = Vec::new();
            if let Some(v) = &r.verification {
                events.push(Event::ContactAdded {
                    person_id: r.person_id.clone(),
                    name: None,
                    via: Via::Provision,
                    verification: v.clone(),
                });
            }
            events.push(Event::Provisioned {
                person_id: r.person_id.clone(),
                endpoint: r.endpoint.clone(),
                reused: r.reused,
            });
            let lines = events.into_iter().map(|e| Reply::unsolicited(e).to_line());
            (lines.collect(), r.guard.take())
        }
        Err(e) => {
            let e = Event::error(ErrorKind::ProvisionFailed, e.to_string());
            (vec![Reply::unsolicited(e).to_line()], None)
        }
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

/// The one writer of stdout: lines never interleave.
async fn write_lines(mut lines: mpsc::Receiver<String>) {
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.recv().await {
        if stdout.write_all(line.as_bytes()).await.is_err()
            || stdout.write_all(b"\n").await.is_err()
            || stdout.flush().await.is_err()
        {
            break;
        }
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
    let (out_tx, out_rx) = mpsc::channel::<String>(OUTPUT_CAPACITY);
    let writer = tokio::spawn(write_lines(out_rx));
    let ready = Event::Ready(IdentityJson::from(&info));
    let _ = out_tx.send(Reply::unsolicited(ready).to_line()).await;

    let mut guard = None;
    if let Some(p) = &provision {
        let (out, g) = provision_lines(&handle, p).await;
        for l in out {
            let _ = out_tx.send(l).await;
        }
        guard = g;
    }
    let mut stdin = LineReader::new(BufReader::new(tokio::io::stdin()), MAX_LINE);
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
            Some(e) = events.recv() => {
                let _ = out_tx.send(Reply::unsolicited(Event::from(&e)).to_line()).await;
            }
            msg = node_exit(&mut guard) => {
                let e = Event::error(ErrorKind::NodeExited, msg);
                let _ = out_tx.send(Reply::unsolicited(e).to_line()).await;
            }
            line = stdin.next(), if stdin_open => match line {
                Ok(Some(line)) => match classify(line) {
                    Input::Blank => {}
                    Input::Answer(r) => { let _ = out_tx.send(r.to_line()).await; }
                    Input::Command(_, Request::Quit) => break,
                    // Commands run in the order they arrive (a `send` after a `send` is
                    // written after it); only the ones that wait on the network answer
                    // later, so they never hold up the rest.
                    Input::Command(id, req) if req.waits_on_network() => {
                        tokio::spawn(answer(handle.clone(), id, req, out_tx.clone()));
                    }
                    Input::Command(id, req) => answer(handle.clone(), id, req, out_tx.clone()).await,
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await.expect("reading a slice cannot fail") {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn a_line_survives_a_read_cancelled_half_way() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = LineReader::new(BufReader::new(rx), 100);
        tx.write_all(b"{\"cmd\":").await.expect("write");
        // The read is cancelled after the first half arrived, as select! does when another
        // branch wins; the second half completes the same line.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(50), r.next()).await;
        assert!(cancelled.is_err());
        tx.write_all(b"\"identity\"}\n").await.expect("write");
        let line = r.next().await.expect("read");
        assert_eq!(line, Some(Line::Bytes(br#"{"cmd":"identity"}"#.to_vec())));
    }

    #[tokio::test]
    async fn lines_are_bytes_capped_and_the_excess_is_dropped() {
        let got = lines(b"ab\n0123456789\n\xff\xfe\nlast", 5).await;
        assert_eq!(
            got,
            vec![
                Line::Bytes(b"ab".to_vec()),
                Line::TooLong,
                Line::Bytes(vec![0xff, 0xfe]),
                Line::Bytes(b"last".to_vec()),
            ]
        );
        assert!(matches!(
            classify(Line::Bytes(vec![0xff])),
            Input::Answer(Reply {
                event: Event::Error {
                    kind: ErrorKind::MalformedJson,
                    ..
                },
                ..
            })
        ));
    }
}
