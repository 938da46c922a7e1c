//! Several "machines" on one host: Linux network namespaces made by the test, joined by a
//! switch (a bridge in a namespace of its own), so no traffic leaves this host; laptops sit
//! behind a NAT router each (nftables masquerade), so they can dial out and nothing can
//! dial them. Needs root, iproute2 and nftables (`.ci/run` installs them); where they are
//! missing, [`Lan::new`] (or [`Lan::add_laptop`]) says why and the test prints SKIPPED.

use std::process::{Command, Stdio};

/// Machines `1..=n` at 10.99.0.k/24 on one switch. Dropping it deletes every namespace
/// (and with them the links).
pub struct Lan {
    prefix: String,
    n: usize,
    /// Laptops added behind NAT: their numbers (after the hosts).
    laptops: Vec<usize>,
    netem_spec: Option<String>,
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
            laptops: Vec::new(),
            netem_spec: netem.map(str::to_string),
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
            netem_ok &= lan.shape(&m);
        }
        lan.netem = netem_ok;
        Ok(lan)
    }

    /// `tc netem` on the switch-facing interface of namespace `ns`, if asked for; whether
    /// it took.
    fn shape(&self, ns: &str) -> bool {
        let Some(spec) = &self.netem_spec else {
            return true;
        };
        let mut args = vec!["-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem"];
        args.extend(spec.split_whitespace());
        match run("tc", &args) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("note: no `tc netem` here ({e}); the links run without it");
                false
            }
        }
    }

    /// A laptop behind a NAT router: the router is on the switch at 10.99.0.(100+k) and
    /// masquerades; the laptop is 192.168.k.2 behind it. Returns `k`, for [`Lan::machine`].
    pub fn add_laptop(&mut self) -> Result<usize, String> {
        let k = self.n + self.laptops.len() + 1;
        self.laptops.push(k);
        let (sw, r, m) = (self.switch(), self.router(k), self.machine(k));
        for ns in [&r, &m] {
            let _ = ip(&["netns", "del", ns]);
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let port = format!("p{k}");
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &r,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("10.99.0.{}/24", 100 + k),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &r, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n", &r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &m,
        ])?;
        let gw = format!("192.168.{k}.1");
        ip(&["-n", &r, "addr", "add", &format!("{gw}/24"), "dev", "lan0"])?;
        ip(&["-n", &r, "link", "set", "lan0", "up"])?;
        ip(&[
            "-n",
            &m,
            "addr",
            "add",
            &format!("{}/24", self.ip(k)),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &m, "link", "set", "eth0", "up"])?;
        ip(&["-n", &m, "route", "add", "default", "via", &gw])?;
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", r.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        exec(&["nft", "add", "table", "ip", "nat"])?;
        exec(&[
            "nft",
            "add chain ip nat post { type nat hook postrouting priority 100 ; }",
        ])?;
        exec(&[
            "nft",
            "add",
            "rule",
            "ip",
            "nat",
            "post",
            "oifname",
            "eth0",
            "masquerade",
        ])?;
        self.netem &= self.shape(&r);
        Ok(k)
    }

    fn router(&self, k: usize) -> String {
        format!("{}-r{k}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The namespace of machine `k` (1-based), for `ip netns exec`.
    pub fn machine(&self, k: usize) -> String {
        format!("{}-m{k}", self.prefix)
    }

    /// Machine `k`'s address (a laptop's is private, behind its router).
    pub fn ip(&self, k: usize) -> String {
        if self.laptops.contains(&k) {
            format!("192.168.{k}.2")
        } else {
            format!("10.99.0.{k}")
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for k in 1..=self.n {
            let _ = ip(&["netns", "del", &self.machine(k)]);
        }
        for &k in &self.laptops {
            let _ = ip(&["netns", "del", &self.machine(k)]);
            let _ = ip(&["netns", "del", &self.router(k)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
