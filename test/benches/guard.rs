//! What the guard costs a call it allows, on the release-built test node, side by side in one run.
//!
//! The `sender` fixture asks courier's `depot` through the courier library, `ASKS` times per
//! request (`ask <n> <process>`): each ask is a `send-and-await-response` from the library, a
//! round trip through the kernel. Two nodes: one with `sender` linked as built (no guard), one with
//! a `library-bounds.json` letting courier message only its own package (a guard between the
//! library and the runtime, allowing every ask). Rounds alternate between the two, so both see the
//! same machine load; the figure is the median time per ask.
//!
//! `cargo bench -p linker-tests --bench guard` prints a Markdown table; `LINKER_BENCH_RUNS` sets
//! the rounds (default 15).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linker_test_host::{caps, Mailbox};
use linker_tests::damage::add_to_zip;
use linker_tests::node::{fixtures, read, Session, LINKER, NODE};
use serde_json::{json, Value};

/// Asks per request.
const ASKS: u32 = 200;

const SENDER: &str = "sender:sender:test.os";

/// A node with courier and sender (with `bounds`, if any) installed, and a mailbox to ask sender.
fn node(bounds: Option<&Value>) -> Result<(Session, Mailbox)> {
    let s = Session::new();
    let f = fixtures();
    for (name, zip) in [
        ("courier", read(f.package("courier"))),
        (
            "sender",
            match bounds {
                Some(bounds) => add_to_zip(
                    &read(f.package("sender")),
                    "library-bounds.json",
                    bounds.to_string().as_bytes(),
                )?,
                None => read(f.package("sender")),
            },
        ),
    ] {
        let metadata = String::from_utf8(read(f.metadata(name)))?;
        let request = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": []}});
        let (body, _) = s.ask(&s.tester, request, Some(zip), vec![caps::messaging(LINKER)]);
        if body["Install"].get("Ok").is_none() {
            bail!("installing {name}: {:#}", body["Install"]);
        }
    }
    if s.node
        .wait_for_print(
            |pid, message| pid == SENDER && message == "sender: done",
            Duration::from_secs(60),
        )
        .is_none()
    {
        bail!("sender did not finish starting");
    }
    let asker = s.node.mailbox(&format!("{NODE}@asker:bench:test.os"), true);
    Ok((s, asker))
}

/// Time per ask of one request of `ASKS` asks.
fn round(asker: &Mailbox) -> Result<Duration> {
    let request = format!("ask {ASKS} depot:courier:test.os");
    let start = Instant::now();
    let reply = asker
        .request(&format!("{NODE}@{SENDER}"), request, None, vec![], 120)
        .map_err(|e| anyhow::anyhow!("sender did not answer: {e:?}"))?;
    let elapsed = start.elapsed();
    let answer = String::from_utf8_lossy(&reply.body).into_owned();
    if answer != format!("asked {ASKS}: depot got bench") {
        bail!("unexpected answer: {answer}");
    }
    Ok(elapsed / ASKS)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> Result<()> {
    let runs: usize = match std::env::var("LINKER_BENCH_RUNS") {
        Ok(n) => n.parse().context("LINKER_BENCH_RUNS is a number")?,
        Err(_) => 15,
    };
    let own = json!({"libraries": {"courier:test.os": {"may": ["send-requests", "spawn", "files", "clocks", "random", "environment", "streams"], "send-to": ["library-package"]}}});
    let anyone = json!({"libraries": {"courier:test.os": {"may": ["send-requests", "spawn", "files", "clocks", "random", "environment", "streams"], "send-to": ["*@*:*:*"]}}});
    // The same package on two nodes first: how far apart two nodes are with no guard at all.
    let variants = [
        ("no guard", None),
        ("no guard, another node", None),
        ("guard, `send-to: [library-package]`", Some(&own)),
        ("guard, `send-to: [*@*:*:*]`", Some(&anyone)),
    ];
    let mut nodes = Vec::new();
    for (name, bounds) in variants {
        let (session, asker) = node(bounds)?;
        round(&asker)?;
        nodes.push((name, session, asker, Vec::new()));
    }
    for _ in 0..runs {
        for (_, _, asker, samples) in &mut nodes {
            samples.push(round(asker)?);
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("| library call: `send-and-await-response` to depot, {runs} rounds of {ASKS} | median per call | vs. no guard |");
    println!("|---|---:|---:|");
    let mut baseline = None;
    for (name, _, _, samples) in nodes {
        let median = median(samples);
        let base = *baseline.get_or_insert(median);
        println!(
            "| {name} | {:.1} µs | {:+.1} µs ({:+.1} %) |",
            us(median),
            us(median) - us(base),
            (median.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0
        );
    }
    Ok(())
}
