//! The receiver speaks OTLP/HTTP and refuses what it cannot read.

use std::io::{Read, Write};
use std::net::TcpStream;

use market_telemetry::receiver::Receiver;

fn http(receiver: &Receiver, request: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(receiver.addr()).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn stats_are_served_as_json() {
    let receiver = Receiver::start().unwrap();
    let response = http(
        &receiver,
        "GET /stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["spans"], 0);
    assert_eq!(json["rejected_requests"], 0);
}

#[test]
fn garbage_json_and_unknown_routes_are_refused_and_counted() {
    let receiver = Receiver::start().unwrap();
    let garbage = [0xff_u8, 0xff, 0xff, 0xff];
    let response = http(
        &receiver,
        &format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            garbage.len()
        ),
        &garbage,
    );
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = http(
        &receiver,
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
        b"{}",
    );
    assert!(response.starts_with("HTTP/1.1 415"), "{response}");
    let response = http(
        &receiver,
        "POST /v1/other HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        b"",
    );
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let stats = receiver.stats();
    assert_eq!(stats.rejected_requests, 3);
    assert_eq!(stats.spans, 0);
}

#[cfg(feature = "receiver")]
#[test]
fn the_binary_announces_its_port_and_prints_counts_when_stdin_closes() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_otlp-receiver"))
        .args(["--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"POST /v1/nothing HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let json: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(json["rejected_requests"], 1);
}
