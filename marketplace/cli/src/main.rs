//! The `market` binary; the command lives in the library (`market_cli::main`).

fn main() -> std::process::ExitCode {
    market_cli::main()
}
