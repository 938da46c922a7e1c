//! Real node and client processes in headless mode, on free loopback ports.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{run_fail, Peer};
use futures_util::{SinkExt, StreamExt};
use lama_tui::domain::{Contact, Endpoint};
use lama_tui::store::Store;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Write each side into the other's store as a contact (both processes stopped).
fn make_contacts(a_dir: &std::path::Path, b_dir: &std::path::Path, b_url: Option<&str>) {
    let (a_person, a_inst) = Store::open(a_dir).unwrap().identity().unwrap().unwrap();
    let (b_person, b_inst) = Store::open(b_dir).unwrap().identity().unwrap().unwrap();
    let a_store = Store::open(a_dir).unwrap();
    a_store
        .put_contact(&Contact {
            person: b_person.clone(),
            instances: vec![b_inst.clone()],
            endpoints: b_url
                .map(|u| Endpoint {
                    person_id: b_person.id().to_string(),
                    instance_id: b_inst.id().to_string(),
                    url: u.into(),
                    transport_key: b_inst.transport_key.clone(),
                })
                .into_iter()
                .collect(),
            profile: None,
            replica: false,
            replica_for: false,
            via: lama_tui::domain::Via::Manual,
            added_at: 0,
            endpoint_notes: vec![],
            vouched_by: vec![],
        })
        .unwrap();
    drop(a_store);
    let b_store = Store::open(b_dir).unwrap();
    b_store
        .put_contact(&Contact {
            person: a_person,
            instances: vec![a_inst],
            endpoints: vec![],
            profile: None,
            replica: false,
            replica_for: false,
            via: lama_tui::domain::Via::Manual,
            added_at: 0,
            endpoint_notes: vec![],
            vouched_by: vec![],
        })
        .unwrap();
}

/// A node and a client created once and written into each other's contacts (stopped).
fn known_pair(base: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (node_dir, client_dir) = (base.join("node"), base.join("client"));
    assert!(Peer::start("node", &node_dir, &[]).quit().success());
    assert!(Peer::start("client", &client_dir, &[]).quit().success());
    make_contacts(&client_dir, &node_dir, None);
    (node_dir, client_dir)
}

#[test]
fn ready_lines_have_distinct_ids_and_identity_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client_dir = tmp.path().join("client");
    let node = Peer::start("node", &node_dir, &["--name", "demo@lama.local"]);
    let client = Peer::start("client", &client_dir, &["--name", "demo@lama.local"]);
    assert_eq!(node.ready["role"], "node");
    assert_eq!(client.ready["role"], "client");
    assert!(node.ready["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("ws://localhost:"));
    assert!(client.ready["endpoint"].is_null());
    for r in [&node.ready, &client.ready] {
        for f in ["person_id", "instance_id"] {
            let s = r[f].as_str().unwrap();
            assert_eq!(s.len(), 64);
            assert!(s
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }
    // The same name on two instances: different keys, so different ids.
    assert_ne!(node.ready["person_id"], client.ready["person_id"]);
    assert_ne!(node.ready["instance_id"], client.ready["instance_id"]);
    let first = node.ready.clone();
    let mut node = node;
    let ident = node.ask(json!({"cmd":"identity"}), 1);
    assert_eq!(ident["event"], "identity");
    assert_eq!(ident["person_id"], first["person_id"]);
    assert_eq!(ident["endpoint"], first["endpoint"]);
    assert!(node.quit().success());
    assert!(client.quit().success());

    let node = Peer::start("node", &node_dir, &[]);
    assert_eq!(node.ready["person_id"], first["person_id"]);
    assert_eq!(node.ready["instance_id"], first["instance_id"]);
    assert_eq!(node.ready["name"], "demo@lama.local");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node_dir.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(node.quit().success());
}

#[test]
fn stranger_is_refused_with_the_reason_and_contacts_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client_dir = tmp.path().join("client");
    let mut node = Peer::start("node", &node_dir, &["--name", "node-demo@lama.local"]);
    let mut client = Peer::start("client", &client_dir, &["--name", "demo@lama.local"]);
    let url = node.endpoint();
    let r = client.ask(json!({"cmd":"connect","url":url}), 1);
    assert_eq!(r["event"], "error", "{r}");
    assert_eq!(r["kind"], "not_a_contact", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("not a contact") && msg.contains("invitation"),
        "{msg}"
    );
    // The node is unchanged and still lists nobody.
    let c = node.ask(json!({"cmd":"contacts"}), 2);
    assert_eq!(c["contacts"], json!([]));
    assert!(node.quit().success());
    assert!(client.quit().success());

    make_contacts(&client_dir, &node_dir, Some(&url));
    let port = url.rsplit(':').next().unwrap().to_string();
    let mut node = Peer::start(
        "node",
        &node_dir,
        &["--listen", &format!("127.0.0.1:{port}")],
    );
    let mut client = Peer::start("client", &client_dir, &[]);
    let r = client.ask(json!({"cmd":"connect","url":url}), 3);
    assert_eq!(r["event"], "connect_ok", "{r}");
    assert_eq!(r["person_id"], node.ready["person_id"]);
    let ev = node.event("connected");
    assert_eq!(ev["person_id"], client.ready["person_id"]);
    assert_eq!(ev["name"], "demo@lama.local");
    let list = client.ask(json!({"cmd":"contacts"}), 4);
    assert_eq!(list["contacts"][0]["state"], "connected", "{list}");
    assert_eq!(list["contacts"][0]["endpoints"][0], url);
    // Quitting the client closes the link cleanly; the node reports why.
    assert!(client.quit().success());
    let d = node.event("disconnected");
    assert_eq!(d["person_id"], ev["person_id"]);
    assert!(node.quit().success());
}

#[test]
fn garbage_and_oversize_frames_close_only_that_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, client_dir) = known_pair(tmp.path());
    let mut node = Peer::start("node", &node_dir, &[]);
    let url = node.endpoint();
    let addr = url
        .trim_start_matches("ws://")
        .replace("localhost", "127.0.0.1");

    // Raw bytes that are not even HTTP.
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(b"\x00\x01garbage\xff\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let _ = tcp.read(&mut buf);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A text frame, garbage binary frames, and an oversize frame, each on its own socket.
        let cases: Vec<Message> = vec![
            Message::Text("hello?".into()),
            Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()),
            Message::Binary(vec![7u8; 48].into()),
            Message::Binary(vec![1u8; 70_000].into()),
        ];
        for m in cases {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let _ = ws.send(m).await;
            // The node closes this connection; reading ends with a close or an error.
            let end = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    }
                }
            })
            .await;
            assert!(end.is_ok(), "node did not close a garbage connection");
        }
    });

    // The node still serves its contact.
    let mut client = Peer::start("client", &client_dir, &[]);
    let r = client.ask(json!({"cmd":"connect","url":url}), 1);
    assert_eq!(r["event"], "connect_ok", "{r}");
    let id = node.ask(json!({"cmd":"identity"}), 2);
    assert_eq!(id["event"], "identity");
    assert!(client.quit().success());
    assert!(node.quit().success());
}

#[test]
fn port_in_use_is_one_clear_line_and_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Peer::start("node", &tmp.path().join("a"), &[]);
    let port = node.endpoint().rsplit(':').next().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, err) = run_fail("node", &tmp.path().join("b"), &["--listen", &listen], &[]);
    assert_ne!(code, 0);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(line.contains("already in use"), "{line}");
    assert!(line.contains("--listen 127.0.0.1:0"), "{line}");
    assert!(line.contains(&port), "{line}");
    drop(node);
}

#[test]
fn passphrase_seals_the_keys_and_a_wrong_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let good = [("LAMA_PASSPHRASE", "correct horse battery")];
    let node = Peer::start_env("node", &dir, &[], &good);
    let pid = node.person_id();
    assert!(node.quit().success());
    let raw = std::fs::read_to_string(dir.join("identity.key")).unwrap();
    assert!(raw.contains("sealed"), "key file not sealed: {raw}");

    let (code, err) = run_fail("node", &dir, &[], &[("LAMA_PASSPHRASE", "wrong")]);
    assert_ne!(code, 0);
    assert!(err.contains("wrong passphrase"), "{err}");
    let (code, err) = run_fail("node", &dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("encrypted") && err.contains("LAMA_PASSPHRASE"),
        "{err}"
    );

    let node = Peer::start_env("node", &dir, &[], &good);
    assert_eq!(node.person_id(), pid);
    assert!(node.quit().success());
}

#[test]
fn locked_and_corrupt_stores_name_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("client");
    let client = Peer::start("client", &dir, &[]);
    let (code, err) = run_fail("client", &dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("in use by another running lama-tui"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(client.quit().success());

    // Overwrite the database files with garbage.
    let store = dir.join("store");
    for e in std::fs::read_dir(&store).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, vec![0xa5u8; 4096]).unwrap();
        }
    }
    let (code, err) = run_fail("client", &dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("damaged") && err.contains("store"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A truncated database file: named as damaged, never a panic.
    let dir = tmp.path().join("node");
    assert!(Peer::start("node", &dir, &[]).quit().success());
    let db = dir.join("store").join(lama_tui::store::DB_FILE);
    let truncate = |len: u64| {
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(len).unwrap();
    };
    truncate(100);
    let (code, err) = run_fail("node", &dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("damaged"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Emptied: an empty file would pass for a new store, but the marker written when the
    // identity was first stored tells the loss apart.
    truncate(0);
    let (code, err) = run_fail("node", &dir, &[], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("damaged") && err.contains("records are gone"),
        "{err}"
    );
}

#[test]
fn headless_errors_echo_the_id_and_end_of_stdin_quits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Peer::start("client", &tmp.path().join("c"), &[]);
    c.send_raw("not json");
    let e = c.event("error");
    assert_eq!(e["kind"], "malformed_json");
    // Not UTF-8: answered, and the control channel carries on.
    c.send_bytes(b"{\"cmd\":\"set_display_name\",\"name\":\"Jos\xe9\"}");
    let e = c.event("error");
    assert_eq!(e["kind"], "malformed_json", "{e}");
    assert!(e["message"].as_str().unwrap().contains("UTF-8"), "{e}");
    // A line over the limit is refused without holding it in memory, then lines go on.
    c.send_bytes(&vec![b'x'; (1 << 20) + 10]);
    let e = c.event("error");
    assert_eq!(e["kind"], "line_too_long", "{e}");
    let e = c.ask(json!({"cmd":"identity"}), 8);
    assert_eq!(e["event"], "identity", "{e}");
    let e = c.ask(json!({"cmd":"fly"}), 9);
    assert_eq!(e["kind"], "unknown_command");
    let e = c.ask(json!({"cmd":"connect"}), 10);
    assert_eq!(e["kind"], "bad_argument");
    let e = c.ask(json!({"cmd":"connect","url":"ws://127.0.0.1:1"}), 11);
    assert_eq!(e["kind"], "unreachable", "{e}");
    c.close_stdin();
    assert!(c.wait_exit().success());
}

#[test]
fn sigterm_shuts_down_cleanly_and_closes_links_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, client_dir) = known_pair(tmp.path());
    let mut node = Peer::start("node", &node_dir, &[]);
    let mut client = Peer::start("client", &client_dir, &[]);
    let r = client.ask(json!({"cmd":"connect","url":node.endpoint()}), 1);
    assert_eq!(r["event"], "connect_ok", "{r}");
    node.event("connected");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(node.wait_exit().success(), "SIGTERM must exit 0");
    let d = client.event("disconnected");
    assert!(
        d["reason"].as_str().unwrap().contains("shutting down"),
        "{d}"
    );
    assert!(client.quit().success());
}
