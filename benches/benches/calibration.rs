//! Calibration benches (DESIGN §7): fixed CPU work whose amount the environment can scale, so the
//! gate can prove it catches a known regression.
//!
//! At start the process measures how many rounds of an integer hash loop take one microsecond on
//! this machine (the fastest of many short timed blocks, so a busy moment does not skew it).
//! `calibration/spin/1us` then runs that many rounds (about 1 µs on an undisturbed core), `calibration/spin/100us` a hundred times as
//! many, all multiplied by `1 + MARKET_BENCH_SLOWDOWN` (default 0): with `MARKET_BENCH_SLOWDOWN=0.25`
//! every iteration does 25 % more work, which is exactly the regression the gate must catch.

use std::hint::black_box;
use std::time::Instant;

use market_benches::{Id, Mode, bench_in, mode};

/// One round of work: a multiply-xorshift step that the compiler cannot fold across rounds.
#[inline(always)]
fn round(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_F491_4F6C_DD1D;
    x ^ (x >> 29)
}

fn spin(rounds: u64) -> u64 {
    let mut x = black_box(0x1234_5678_u64);
    for _ in 0..rounds {
        x = round(black_box(x));
    }
    x
}

/// Rounds per microsecond on this machine, from the fastest of many short timed blocks. The
/// fastest block is the one no neighbour, interrupt or frequency dip disturbed, so it varies far
/// less between processes than a mean or median would on a busy machine; per-process calibration
/// noise would otherwise blur the very slowdown these benches exist to show.
fn calibrate() -> f64 {
    const BLOCK: u64 = 20_000;
    spin(BLOCK * 50); // warm the core up before measuring
    (0..400)
        .map(|_| {
            let start = Instant::now();
            black_box(spin(BLOCK));
            BLOCK as f64 / (start.elapsed().as_nanos().max(1) as f64 / 1000.0)
        })
        .fold(0.0, f64::max)
}

/// `MARKET_BENCH_SLOWDOWN` as a factor of extra work (0 when unset).
fn slowdown() -> Result<f64, String> {
    match std::env::var("MARKET_BENCH_SLOWDOWN") {
        Err(std::env::VarError::NotPresent) => Ok(0.0),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!("{v:?} is not valid text")),
        Ok(v) if v.trim().is_empty() => Ok(0.0),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && (0.0..=100.0).contains(&f) => Ok(f),
            _ => Err(format!("{v:?} is not a number between 0 and 100")),
        },
    }
}

fn main() {
    market_benches::start("calibration");
    let slowdown = match slowdown() {
        Ok(s) => s,
        Err(why) => {
            eprintln!(
                "error: MARKET_BENCH_SLOWDOWN={why}; it is the extra work injected into the calibration \
                 benches, as a fraction (0.25 means 25 % more work); unset it for none"
            );
            std::process::exit(2);
        }
    };
    let mut c = market_benches::criterion();
    // Calibrating takes a few milliseconds; listing ids needs none of it.
    let per_us = if mode() == Mode::List {
        0.0
    } else {
        calibrate()
    };
    if slowdown > 0.0 {
        eprintln!(
            "calibration: injected slowdown {:.1} % (MARKET_BENCH_SLOWDOWN={slowdown})",
            slowdown * 100.0
        );
    }
    let mut g = c.benchmark_group("calibration");
    for (label, micros) in [("1us", 1.0), ("100us", 100.0)] {
        let rounds = (per_us * micros * (1.0 + slowdown)).round().max(1.0) as u64;
        bench_in(
            &mut g,
            "calibration",
            Id::new("spin", label),
            2000,
            || rounds,
            |&r| spin(r),
        );
    }
    g.finish();
    c.final_summary();
}
