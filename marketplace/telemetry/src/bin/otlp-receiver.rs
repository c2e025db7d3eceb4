//! `otlp-receiver [--port PORT]`: an OTLP/HTTP receiver on 127.0.0.1 that counts what it gets.
//!
//! Its first stdout line is exactly `listening on http://127.0.0.1:PORT` (`--port 0`, the default,
//! picks a free port). `GET /stats` serves the counts as JSON while it runs; on SIGTERM, SIGINT or
//! when its stdin closes it prints the counts as one JSON document on stdout and exits 0. Whoever
//! starts it should hold its stdin open (a pipe) for as long as it should live.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use market_telemetry::receiver::{Collector, serve};

const USAGE: &str = "usage: otlp-receiver [--port PORT]\n\
    Listens on 127.0.0.1:PORT (0 = a free port) for OTLP/HTTP protobuf exports, prints\n\
    `listening on http://127.0.0.1:PORT`, serves counts at GET /stats, and prints them as JSON\n\
    on SIGTERM, SIGINT or when stdin closes.";

fn parse_port(args: &[String]) -> Result<u16, String> {
    let mut port = 0;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port {value:?} is not a port number (0-65535)"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(port)
}

async fn until_asked_to_stop() {
    // Stdin is watched from a thread of its own rather than with tokio's `io-std`: that feature
    // is one the otel benches do not enable, and with it the receiver's build could not reuse
    // their tokio and everything above it (the gate builds the two one after the other).
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 256];
        // Whatever is written is ignored; end of file (or a read error) means the parent is gone.
        while let Ok(n) = stdin.read(&mut buffer) {
            if n == 0 {
                break;
            }
        }
        let _ = closed.send(());
    });
    let stdin_closed = async {
        let _ = stdin_closed.await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match parse_port(&args) {
        Ok(port) => port,
        Err(message) => {
            eprintln!("otlp-receiver: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("otlp-receiver: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("otlp-receiver: cannot listen on {addr}: {e}");
                return ExitCode::from(2);
            }
        };
        let bound = match listener.local_addr() {
            Ok(bound) => bound,
            Err(e) => {
                eprintln!("otlp-receiver: cannot read the bound address: {e}");
                return ExitCode::from(2);
            }
        };
        let mut stdout = std::io::stdout();
        if writeln!(stdout, "listening on http://{bound}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::from(2);
        }
        let collector = Collector::default();
        serve(listener, collector.clone(), until_asked_to_stop()).await;
        let stats = collector.stats();
        match serde_json::to_string(&stats) {
            Ok(json) => {
                let _ = writeln!(stdout, "{json}");
                let _ = stdout.flush();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otlp-receiver: cannot render the counts: {e}");
                ExitCode::from(2)
            }
        }
    })
}
