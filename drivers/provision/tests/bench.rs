//! Benchmark (prints figures, asserts nothing about time): wall time of
//! `create` for K = 1, 5, 10 hosts with the emulator's OS install fixed at
//! D seconds. Servers are ordered and waited for in parallel, so the target
//! is close to D for every K. Run: `cargo test -p scaleway-provision --test
//! bench -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Instant;

use common::{Bed, path_of};

/// The emulator's install at speed 1.0: `to_install` 25 s + `installing` 330 s.
const INSTALL_AT_SPEED_1: f64 = 355.0;

#[test]
#[ignore = "benchmark: prints figures; run by .ci/run"]
fn create_time_against_hosts() {
    let speed = 0.01;
    let d = INSTALL_AT_SPEED_1 * speed;
    println!("provision create, emulator install delay D = {d:.2} s (speed {speed}):");
    println!("{:>4} {:>10} {:>8}", "K", "wall (s)", "wall/D");
    for k in [1u32, 5, 10] {
        let bed = Bed::with_speed(&format!("bench-{k}"), speed);
        let file = bed.description("bench", k, 1);
        let started = Instant::now();
        bed.ok(&["create", path_of(&file)]);
        let wall = started.elapsed().as_secs_f64();
        println!("{k:>4} {wall:>10.2} {:>8.2}", wall / d);
        bed.ok(&["delete", "bench"]);
    }
}
