//! Codes that work off this machine (issue 16, part 4), with real processes: a node on
//! loopback says its codes work only here; one on every interface gives out its addresses
//! (in a network namespace of the test's own, with an address no other machine has); the
//! public URL comes first; open codes follow the node to a new port; the provisioned node
//! takes --node-listen and --node-public-url.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::Peer;
use lama_tui::domain::Code;
use serde_json::{json, Value};

fn urls_of(code: &Value) -> Vec<String> {
    match Code::decode(code.as_str().expect("a code")) {
        Ok(Code::Invite(inv)) => inv.urls,
        other => panic!("not an invitation: {other:?}"),
    }
}

#[test]
fn a_loopback_node_says_its_codes_work_only_here() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Peer::start("node", &tmp.path().join("n"), &["--discovery", "off"]);
    let inv = node.ask(json!({"cmd":"invite"}), 1);
    assert_eq!(inv["reach"], "local", "{inv}");
    let urls = urls_of(&inv["code"]);
    assert_eq!(urls, [node.endpoint()], "{urls:?}");
    assert!(urls[0].starts_with("ws://localhost:"), "{urls:?}");
    node.quit();
}

#[test]
fn the_public_url_comes_first_and_makes_a_code_work_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let public = "ws://chat.example.org:8765";
    let args = ["--discovery", "off", "--public-url", public];
    let mut node = Peer::start("node", &tmp.path().join("n"), &args);
    assert_eq!(node.endpoint(), public);
    let inv = node.ask(json!({"cmd":"invite"}), 1);
    assert_eq!(inv["reach"], "network", "{inv}");
    // The loopback address after it, for a client on this machine.
    let urls = urls_of(&inv["code"]);
    assert_eq!(urls[0], public, "{urls:?}");
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls[1].starts_with("ws://localhost:"), "{urls:?}");
    node.quit();
}

#[test]
fn an_open_code_follows_the_node_to_its_new_port() {
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("n");
    let mut node = Peer::start("node", &nd, &["--discovery", "off"]);
    let old_code = node.ask(json!({"cmd":"invite"}), 1)["code"].clone();
    let old_url = node.endpoint();
    assert!(node.quit().success());
    // Restarted on another free port: the open code names the new one.
    let mut node = Peer::start("node", &nd, &["--discovery", "off"]);
    assert_ne!(node.endpoint(), old_url);
    let list = node.ask(json!({"cmd":"invites"}), 2);
    let open: Vec<&Value> = list["invites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{list}");
    let code = open[0]["code"].clone();
    assert_ne!(code, old_code, "the listed code is not the dead one");
    assert_eq!(urls_of(&code), [node.endpoint()]);
    // The old code's address is dead; the listed one pairs.
    let mut client = Peer::start("client", &tmp.path().join("c"), &["--discovery", "off"]);
    let r = client.ask(json!({"cmd":"accept","code":old_code}), 3);
    assert_eq!(r["event"], "error", "{r}");
    let r = client.ask(json!({"cmd":"accept","code":code}), 4);
    assert_eq!(r["event"], "contact_added", "{r}");
    client.quit();
    node.quit();
}

#[test]
fn the_provisioned_node_takes_its_listen_address_and_public_url() {
    let tmp = tempfile::tempdir().unwrap();
    let public = "ws://home.example.net:9000";
    let args = [
        "--discovery",
        "off",
        "--provision-node",
        "--node-listen",
        "127.0.0.1:0",
        "--node-public-url",
        public,
    ];
    let mut client = Peer::start("client", &tmp.path().join("c"), &args);
    // The public name does not resolve here: the pairing went to the loopback address the
    // code carries after it.
    let p = client.event("provisioned");
    assert_eq!(p["endpoint"], public, "{p}");
    client.event("connected");
    client.quit();
}

/// Root can make network namespaces; elsewhere the test says why it skips.
fn netns(name: &str) -> Option<NetNs> {
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let _ = ok(&["netns", "del", name]);
    if !ok(&["netns", "add", name]) {
        return None;
    }
    let ns = NetNs(name.to_string());
    // A veth pair inside the namespace (the dummy driver is not in every kernel).
    let steps: [&[&str]; 5] = [
        &["-n", name, "link", "set", "lo", "up"],
        &[
            "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
        &["-n", name, "addr", "add", "10.77.0.1/24", "dev", "v0"],
        &["-n", name, "link", "set", "v0", "up"],
        &["-n", name, "link", "set", "v1", "up"],
    ];
    steps.iter().all(|s| ok(s)).then_some(ns)
}

struct NetNs(String);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A headless instance run inside network namespace `ns`: the child, its stdin, and a
/// reader of its JSON lines.
fn spawn_in(
    ns: &NetNs,
    args: &[&str],
    dir: &std::path::Path,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    impl FnMut() -> Value,
) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, common::bin()])
        .args(args)
        .args(["--headless", "--discovery", "off", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = move || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    (child, stdin, next)
}

#[test]
fn a_node_on_every_interface_gives_out_its_addresses_not_0_0_0_0() {
    let name = format!("lama-reach-{}", std::process::id());
    let Some(ns) = netns(&name) else {
        eprintln!("SKIPPED: cannot make a network namespace here (needs root and iproute2)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--role", "node", "--listen", "0.0.0.0:0"];
    let (mut child, mut stdin, mut next) = spawn_in(&ns, &args, &tmp.path().join("n"));
    let ready = next();
    let port = ready["endpoint"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        ready["endpoint"],
        format!("ws://10.77.0.1:{port}"),
        "{ready}"
    );
    writeln!(stdin, "{}", json!({"cmd":"invite","id":1})).unwrap();
    let inv = next();
    assert_eq!(inv["reach"], "network", "{inv}");
    let urls = urls_of(&inv["code"]);
    assert_eq!(urls, [format!("ws://10.77.0.1:{port}")], "{urls:?}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_loopback_code_taken_to_another_machine_is_refused_with_why() {
    let name = format!("lama-away-{}", std::process::id());
    let Some(ns) = netns(&name) else {
        eprintln!("SKIPPED: cannot make a network namespace here (needs root and iproute2)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The node on this machine's loopback; the client on "another machine" (the namespace
    // has a loopback of its own, where nothing listens).
    let mut node = Peer::start("node", &tmp.path().join("n"), &["--discovery", "off"]);
    let inv = node.ask(json!({"cmd":"invite"}), 1);
    assert_eq!(inv["reach"], "local", "{inv}");
    let args = ["--role", "client"];
    let (mut child, mut stdin, mut next) = spawn_in(&ns, &args, &tmp.path().join("c"));
    assert_eq!(next()["event"], "ready");
    writeln!(
        stdin,
        "{}",
        json!({"cmd":"accept","code":inv["code"],"id":2})
    )
    .unwrap();
    let r = next();
    assert_eq!(r["kind"], "unreachable", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("works only on the machine whose node made it"),
        "{msg}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    // Nothing half-made on either side.
    assert_eq!(
        node.ask(json!({"cmd":"contacts"}), 3)["contacts"],
        json!([])
    );
    node.quit();
}
