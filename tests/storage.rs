//! Storage faults that need a real file system: a full disk. (Corrupt, truncated and locked
//! stores and a wrong passphrase are in tests/process.rs.) The disk is a small tmpfs; where
//! the test cannot mount one (no privilege), it says so and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Peer;
use serde_json::json;

/// A mounted tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_is_named_loses_nothing_and_heals_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk"), "24m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); the full-disk case is untested in this run"
        );
        return;
    };
    let nd = disk.0.join("node");
    let mut node = Peer::start("node", &nd, &["--discovery", "off"]);
    let mut client = Peer::start("client", &tmp.path().join("c"), &["--discovery", "off"]);
    let inv = node.ask(json!({"cmd":"invite"}), 1);
    let r = client.ask(json!({"cmd":"accept","code":inv["code"]}), 2);
    assert_eq!(r["event"], "contact_added", "{r}");
    client.event("connected");
    let ch = lama_tui::net::pairing::direct_channel_id(&node.person_id(), &client.person_id());
    for i in 0..20 {
        let r = node.ask(
            json!({"cmd":"send","channel":ch,"text":format!("before {i}")}),
            10 + i,
        );
        assert_eq!(r["event"], "sent", "{r}");
    }
    client.wait_for("the node's last message", |v| v["text"] == "before 19");

    let filler = fill(&disk.0);
    // The node's own write: refused with the cause and the fix, no panic.
    let mut refused = None;
    for i in 0..200 {
        let r = node.ask(
            json!({"cmd":"send","channel":ch,"text":format!("while full {i} {}", "x".repeat(2000))}),
            100 + i,
        );
        if r["event"] == "error" {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the node kept accepting writes on a full disk");
    assert_eq!(r["kind"], "disk_full", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("free") || msg.contains("space"), "{msg}");
    // The client's messages cannot be stored on the node either; they wait on the client.
    for i in 0..5 {
        let r = client.ask(
            json!({"cmd":"send","channel":ch,"text":format!("from client while full {i}")}),
            400 + i,
        );
        assert_eq!(r["event"], "sent", "{r}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node died on a full disk"
    );
    let h = node.ask(json!({"cmd":"history","channel":ch,"limit":1000}), 500);
    let texts: Vec<String> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    for i in 0..20 {
        assert!(texts.contains(&format!("before {i}")), "lost 'before {i}'");
    }

    // Space returns: the client's waiting messages arrive, and a restart finds everything.
    std::fs::remove_file(filler).unwrap();
    let r = client.ask(json!({"cmd":"reconnect"}), 501);
    assert_eq!(r["event"], "reconnecting");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = node.ask(json!({"cmd":"history","channel":ch,"limit":1000}), 502);
        let s = h.to_string();
        if (0..5).all(|i| s.contains(&format!("from client while full {i}"))) {
            break;
        }
        if Instant::now() >= deadline {
            let log = lama_tui::app::logging::read_logs(&nd);
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            panic!(
                "the client's messages never arrived; node log tail (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the node writes again, without a restart.
    let r = node.ask(
        json!({"cmd":"send","channel":ch,"text":"after the disk had room again"}),
        503,
    );
    assert_eq!(r["event"], "sent", "{r}");
    assert!(node.quit().success());
    let mut node = Peer::start("node", &nd, &["--discovery", "off"]);
    let h = node.ask(json!({"cmd":"history","channel":ch,"limit":1000}), 600);
    let s = h.to_string();
    for i in 0..20 {
        assert!(
            s.contains(&format!("before {i}\"")),
            "lost 'before {i}' after restart"
        );
    }
    for i in 0..5 {
        assert!(s.contains(&format!("from client while full {i}")));
    }
    assert!(node.quit().success());
}
