//! Several "machines" on one host: Linux network namespaces made by the test, joined by a
//! switch (a bridge in a namespace of its own), so no traffic leaves this host. Needs root
//! and iproute2 (`.ci/run` installs it); where they are missing, [`Lan::new`] says why and
//! the test prints SKIPPED.

use std::process::{Command, Stdio};

/// Machines `1..=n` at 10.99.0.k/24 on one switch. Dropping it deletes every namespace
/// (and with them the links).
pub struct Lan {
    prefix: String,
    n: usize,
    /// Whether `tc netem` took (this host's kernel may lack it): the delay the test asked
    /// for is then in effect.
    pub netem: bool,
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(bin: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{bin} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lan {
    /// `n` machines; `netem` (e.g. `"delay 20ms"`) is applied to every machine's egress, so
    /// a round trip between two machines crosses it twice.
    pub fn new(tag: &str, n: usize, netem: Option<&str>) -> Result<Lan, String> {
        let mut lan = Lan {
            prefix: format!("lm-{tag}-{}", std::process::id()),
            n: 0,
            netem: false,
        };
        let sw = lan.switch();
        let _ = ip(&["netns", "del", &sw]);
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        let mut netem_ok = netem.is_some();
        for k in 1..=n {
            let m = lan.machine(k);
            let _ = ip(&["netns", "del", &m]);
            ip(&["netns", "add", &m])?;
            lan.n = k;
            let port = format!("p{k}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &m,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &m, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &m,
                "addr",
                "add",
                &format!("{}/24", lan.ip(k)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &m, "link", "set", "eth0", "up"])?;
            if let Some(spec) = netem {
                let mut args = vec!["-n", &m, "qdisc", "add", "dev", "eth0", "root", "netem"];
                args.extend(spec.split_whitespace());
                if let Err(e) = run("tc", &args) {
                    netem_ok = false;
                    eprintln!("note: no `tc netem` here ({e}); the links run without it");
                }
            }
        }
        lan.netem = netem_ok;
        Ok(lan)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The namespace of machine `k` (1-based), for `ip netns exec`.
    pub fn machine(&self, k: usize) -> String {
        format!("{}-m{k}", self.prefix)
    }

    /// Machine `k`'s address.
    pub fn ip(&self, k: usize) -> String {
        format!("10.99.0.{k}")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for k in 1..=self.n {
            let _ = ip(&["netns", "del", &self.machine(k)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
