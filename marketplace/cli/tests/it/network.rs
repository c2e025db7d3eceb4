//! Three `market node` processes on loopback: publish on one, install on another.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Market, package};

struct NodeProc {
    child: Child,
    addr: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `market node` in `m`'s home on loopback TCP and waits until its control API is up.
fn start_node(m: &Market, bootstrap: Option<&str>) -> NodeProc {
    let mut cmd = m.cmd();
    cmd.args(["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut node = NodeProc {
        child,
        addr: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("market node did not report its control API in time");
        if let Some(a) = line.strip_prefix("listening on ") {
            node.addr = a.to_owned();
        }
        if line.starts_with("control API on ") {
            break;
        }
    }
    assert!(node.addr.contains("/p2p/"), "no dialable address reported");
    node
}

#[test]
fn publish_on_one_node_install_on_another() {
    let (a, b, c) = (Market::new(), Market::new(), Market::new());
    let na = start_node(&a, None);
    let _nb = start_node(&b, Some(&na.addr));
    let _nc = start_node(&c, Some(&na.addr));

    let src = tempfile::tempdir().unwrap();
    a.ok(&["keygen"]);
    let core = package(
        src.path(),
        "net-core",
        "1.0.0",
        "Networked core template",
        &[],
    );
    let app = package(
        src.path(),
        "net-app",
        "2.0.0",
        "Networked app template",
        &[("net-core", "^1")],
    );
    for dir in [&core, &app] {
        let out = a.ok(&["publish", "--network", dir.to_str().unwrap()]);
        assert!(out.contains("via the running node"), "{out}");
    }

    // The records travel through the DHT and gossip; poll the real install until it succeeds or a
    // deadline passes (processes on a loaded machine take their time to connect).
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = c.run(&["install", "--network", "net-app"]);
        if out.status.success() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "install on node C kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("installed net-app@2.0.0") && stdout.contains("installed net-core@1.0.0"),
        "{stdout}"
    );
    assert!(
        stderr.contains("via the running node"),
        "the command must say how it reached the network: {stderr}"
    );
    let installed = std::fs::read_to_string(c.path().join("packages/net-core/main.tpl")).unwrap();
    assert_eq!(installed, "net-core 1.0.0\n");

    // A short-lived client node (no node in this home) finds the same packages through --peer.
    let d = Market::new();
    let out = d.ok(&[
        "search",
        "--network",
        "--peer",
        &na.addr,
        "--json",
        "networked",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["package"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"net-app") && names.contains(&"net-core"),
        "{out}"
    );
    assert!(
        v["network"]
            .as_str()
            .unwrap()
            .contains("short-lived client node"),
        "{out}"
    );
}
