//! `wss://` (issue 16, part 5), with real processes: a node serving TLS with a certificate
//! from a private CA, trusted by a client given that CA with `--ca-file`; refused, with
//! why and the fix, by a client without it; a self-signed certificate (as `openssl req
//! -x509` makes: marked as a CA) trusted as itself; bad TLS files stopping the start with a
//! message naming the file; and the same across two "machines" (network namespaces).

mod common;

use std::path::{Path, PathBuf};

use common::netns::Lan;
use common::{run_fail, Peer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};

/// PEM files written into a directory: a certificate and, for a node, its key.
struct Pem {
    cert: PathBuf,
    key: PathBuf,
}

fn write(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Pem {
    let pem = Pem {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pem.cert, cert.pem()).unwrap();
    std::fs::write(&pem.key, key.serialize_pem()).unwrap();
    pem
}

/// A private CA and a server certificate it signed for `names` (DNS names or IPs).
fn ca_and_leaf(dir: &Path, names: &[&str]) -> (Pem, Pem) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "lama test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_pem = write(dir, "ca", &ca_cert, &ca_key);
    let leaf =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (ca_pem, write(dir, "node", &leaf_cert, &leaf_key))
}

/// A self-signed certificate marked as a CA, as `openssl req -x509 -subj /CN=localhost`
/// makes it: the web PKI refuses it as a server's certificate.
fn self_signed(dir: &Path, name: &str) -> Pem {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    write(dir, name, &cert, &key)
}

fn tls_node(dir: &Path, pem: &Pem, extra: &[&str]) -> Peer {
    let mut args = vec![
        "--discovery",
        "off",
        "--tls-cert",
        pem.cert.to_str().unwrap(),
        "--tls-key",
        pem.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Peer::start("node", dir, &args)
}

fn invite(node: &mut Peer, id: u64) -> Value {
    node.ask(json!({"cmd":"invite"}), id)["code"].clone()
}

/// Pair `client` with `node` by `code`, then a message each way.
fn pair_and_chat(node: &mut Peer, client: &mut Peer, code: Value) {
    let r = client.ask(json!({"cmd":"accept","code":code}), 10);
    assert_eq!(r["event"], "contact_added", "{r}");
    let added = node.event("contact_added");
    assert_eq!(added["verification"], r["verification"], "{added} / {r}");
    client.wait_for("connected", |v| v["event"] == "connected");
    let ch = lama_tui::net::pairing::direct_channel_id(&client.person_id(), &node.person_id());
    say(client, node, &ch, "over wss");
    say(node, client, &ch, "back");
}

fn say(from: &mut Peer, to: &mut Peer, ch: &str, text: &str) {
    let r = from.ask(json!({"cmd":"send","channel":ch,"text":text}), 11);
    assert_eq!(r["event"], "sent", "{r}");
    to.wait_for(text, |v| v["event"] == "message" && v["text"] == text);
}

#[test]
fn a_wss_node_pairs_with_a_client_that_trusts_its_ca_and_refuses_one_that_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_and_leaf(tmp.path(), &["localhost", "127.0.0.1"]);
    let mut node = tls_node(&tmp.path().join("n"), &leaf, &[]);
    assert!(
        node.endpoint().starts_with("wss://localhost:"),
        "{}",
        node.ready
    );
    let code = invite(&mut node, 1);

    // Without the CA: refused before any pairing, with the cause and the fix.
    let mut stranger = Peer::start("client", &tmp.path().join("s"), &["--discovery", "off"]);
    let r = stranger.ask(json!({"cmd":"accept","code":code}), 2);
    assert_eq!(r["kind"], "tls_untrusted", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("not trusted") && msg.contains("--ca-file"),
        "{msg}"
    );
    assert_eq!(
        stranger.ask(json!({"cmd":"contacts"}), 3)["contacts"],
        json!([])
    );
    assert_eq!(
        node.ask(json!({"cmd":"contacts"}), 4)["contacts"],
        json!([])
    );
    stranger.quit();

    // With it: the same code pairs, and messages go both ways over TLS.
    let ca_arg = ca.cert.to_str().unwrap();
    let args = ["--discovery", "off", "--ca-file", ca_arg];
    let mut client = Peer::start("client", &tmp.path().join("c"), &args);
    pair_and_chat(&mut node, &mut client, code);
    client.quit();
    node.quit();
}

#[test]
fn a_self_signed_certificate_given_with_ca_file_is_trusted_as_itself_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let own = self_signed(tmp.path(), "own");
    let other = self_signed(tmp.path(), "other");
    let mut node = tls_node(&tmp.path().join("n"), &own, &[]);
    let code = invite(&mut node, 1);

    let args = [
        "--discovery",
        "off",
        "--ca-file",
        other.cert.to_str().unwrap(),
    ];
    let mut wrong = Peer::start("client", &tmp.path().join("w"), &args);
    let r = wrong.ask(json!({"cmd":"accept","code":code}), 2);
    assert_eq!(r["kind"], "tls_untrusted", "{r}");
    wrong.quit();

    let args = [
        "--discovery",
        "off",
        "--ca-file",
        own.cert.to_str().unwrap(),
    ];
    let mut client = Peer::start("client", &tmp.path().join("c"), &args);
    pair_and_chat(&mut node, &mut client, code);
    client.quit();
    node.quit();
}

#[test]
fn unusable_tls_files_stop_the_start_naming_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_and_leaf(tmp.path(), &["localhost"]);
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = tmp.path().join("missing.pem");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "node",
            vec![
                "--tls-cert".into(),
                s(&missing),
                "--tls-key".into(),
                s(&leaf.key),
            ],
            "cannot use --tls-cert",
        ),
        (
            "node",
            vec![
                "--tls-cert".into(),
                s(&leaf.cert),
                "--tls-key".into(),
                s(&garbage),
            ],
            "cannot use --tls-key",
        ),
        // The CA's key is a key, but not this certificate's.
        (
            "node",
            vec![
                "--tls-cert".into(),
                s(&leaf.cert),
                "--tls-key".into(),
                s(&ca.key),
            ],
            "do not make a usable pair",
        ),
        (
            "client",
            vec!["--ca-file".into(), s(&garbage)],
            "holds no PEM certificate",
        ),
        (
            "client",
            vec![
                "--tls-cert".into(),
                s(&leaf.cert),
                "--tls-key".into(),
                s(&leaf.key),
            ],
            "are for a node",
        ),
        // One without the other: clap names the missing flag.
        (
            "node",
            vec!["--tls-cert".into(), s(&leaf.cert)],
            "--tls-key",
        ),
    ];
    for (i, (role, extra, want)) in cases.iter().enumerate() {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let dir = tmp.path().join(format!("d{i}"));
        let (code, err) = run_fail(role, &dir, &extra, &[]);
        assert_ne!(code, 0, "case {i}: {err}");
        assert!(err.contains(want), "case {i}: wanted {want:?} in: {err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
    }
}

#[test]
fn a_wss_node_on_one_machine_serves_a_client_on_another() {
    let lan = match Lan::new("tls", 2, None) {
        Ok(lan) => lan,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot make network namespaces here ({why}); needs root and iproute2"
            );
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_and_leaf(tmp.path(), &[&lan.ip(1)]);
    let args = [
        "--discovery",
        "off",
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
    ];
    let mut node = Peer::start_in(&lan.machine(1), "node", &tmp.path().join("n"), &args);
    let want = format!("wss://{}:", lan.ip(1));
    assert!(node.endpoint().starts_with(&want), "{}", node.ready);
    let inv = node.ask(json!({"cmd":"invite"}), 1);
    assert_eq!(inv["reach"], "network", "{inv}");
    let args = ["--discovery", "off", "--ca-file", ca.cert.to_str().unwrap()];
    let mut client = Peer::start_in(&lan.machine(2), "client", &tmp.path().join("c"), &args);
    pair_and_chat(&mut node, &mut client, inv["code"].clone());
    client.quit();
    node.quit();
}
