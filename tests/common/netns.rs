//! Several "machines" on one host: Linux network namespaces made by the test, joined by a
//! switch (a bridge in a namespace of its own), so no traffic leaves this host; laptops sit
//! behind a NAT router each (nftables masquerade), so they can dial out and nothing can
//! dial them. Needs root, iproute2 and nftables (`.ci/run` installs them); where they are
//! missing, [`Lan::new`] (or [`Lan::add_laptop`]) says why and the test prints SKIPPED.
//!
//! Delay and loss come from `tc netem` on every machine's egress where the kernel has it;
//! where it does not (this project's CI kernel lacks sch_netem), the switch is a process in
//! user space doing the same to each packet (`tun_switch.py`: a TUN device per machine).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Machines `1..=n` at 10.99.0.k/24 on one switch. Dropping it deletes every namespace
/// (and with them the links).
pub struct Lan {
    prefix: String,
    n: usize,
    /// Laptops added behind NAT: their numbers (after the hosts).
    laptops: Vec<usize>,
    netem_spec: Option<String>,
    /// The user-space switch, when delay and loss were asked for and `tc netem` is missing.
    userspace: Option<Switch>,
    /// Whether the delay and loss the test asked for are in effect (by `tc netem` or the
    /// user-space switch).
    pub netem: bool,
}

/// `tun_switch.py`, running: machines are added over its stdin.
struct Switch {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Switch {
    /// Start it for a netem spec such as `delay 20ms loss 1%`.
    fn start(spec: &str) -> Result<Switch, String> {
        let (mut delay, mut loss) = (0.0f64, 0.0f64);
        let words: Vec<&str> = spec.split_whitespace().collect();
        for w in words.windows(2) {
            match w[0] {
                "delay" => delay = num(w[1].trim_end_matches("ms"))?,
                "loss" => loss = num(w[1].trim_end_matches('%'))?,
                _ => {}
            }
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/tun_switch.py");
        let mut child = Command::new("python3")
            .args([script, &delay.to_string(), &loss.to_string(), "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run python3 for the user-space switch: {e}"))?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let out = BufReader::new(child.stdout.take().expect("stdout was piped"));
        Ok(Switch { child, stdin, out })
    }

    /// Give namespace `ns` a port with address `cidr`.
    fn add(&mut self, ns: &str, cidr: &str) -> Result<(), String> {
        writeln!(self.stdin, "add {ns} {cidr}").map_err(|e| format!("switch: {e}"))?;
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .map_err(|e| format!("switch: {e}"))?;
        match line.trim() {
            "ok" => Ok(()),
            "" => Err("the user-space switch exited".into()),
            why => Err(format!("user-space switch: {why}")),
        }
    }
}

fn num(s: &str) -> Result<f64, String> {
    s.parse()
        .map_err(|_| format!("cannot read {s:?} in the netem spec"))
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

/// Whether this kernel has `tc netem` (tried on a scratch namespace's loopback).
fn netem_available(prefix: &str) -> Result<bool, String> {
    let probe = format!("{prefix}-probe");
    let _ = ip(&["netns", "del", &probe]);
    ip(&["netns", "add", &probe])?;
    let args = [
        "-n", &probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
    ];
    let ok = run("tc", &args);
    let _ = ip(&["netns", "del", &probe]);
    if let Err(e) = &ok {
        eprintln!("note: no `tc netem` here ({e}); a user-space switch adds the delay and loss");
    }
    Ok(ok.is_ok())
}

impl Lan {
    /// `n` machines; `netem` (e.g. `"delay 20ms"`) is applied to every machine's egress, so
    /// a round trip between two machines crosses it twice.
    pub fn new(tag: &str, n: usize, netem: Option<&str>) -> Result<Lan, String> {
        let prefix = format!("lm-{tag}-{}", std::process::id());
        let userspace = match netem {
            Some(spec) if !netem_available(&prefix)? => Some(Switch::start(spec)?),
            _ => None,
        };
        let mut lan = Lan {
            prefix,
            n: 0,
            laptops: Vec::new(),
            netem_spec: netem.filter(|_| userspace.is_none()).map(str::to_string),
            netem: netem.is_some(),
            userspace,
        };
        let sw = lan.switch();
        let _ = ip(&["netns", "del", &sw]);
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for k in 1..=n {
            let m = lan.machine(k);
            let _ = ip(&["netns", "del", &m]);
            ip(&["netns", "add", &m])?;
            lan.n = k;
            ip(&["-n", &m, "link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", lan.ip(k));
            if let Some(switch) = &mut lan.userspace {
                switch.add(&m, &cidr)?;
                continue;
            }
            let port = format!("p{k}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &m,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &m, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &m, "link", "set", "eth0", "up"])?;
            lan.shape(&m)?;
        }
        Ok(lan)
    }

    /// `tc netem` on the switch-facing interface of namespace `ns`, if asked for (and the
    /// kernel has it: else the user-space switch does the shaping).
    fn shape(&self, ns: &str) -> Result<(), String> {
        let Some(spec) = &self.netem_spec else {
            return Ok(());
        };
        let mut args = vec!["-n", ns, "qdisc", "add", "dev", "eth0", "root", "netem"];
        args.extend(spec.split_whitespace());
        run("tc", &args)
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
        let wan = format!("10.99.0.{}/24", 100 + k);
        if let Some(switch) = &mut self.userspace {
            switch.add(&r, &wan)?;
        } else {
            let port = format!("p{k}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &r,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &r, "addr", "add", &wan, "dev", "eth0"])?;
            ip(&["-n", &r, "link", "set", "eth0", "up"])?;
            self.shape(&r)?;
        }
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
        if let Some(mut switch) = self.userspace.take() {
            let _ = switch.child.kill();
            let _ = switch.child.wait();
        }
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
