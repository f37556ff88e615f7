//! `agentd-bench core`: the core's performance goals, measured in one process with a
//! zero-latency fake Messages API on loopback, the real store (SQLite with synchronous=FULL,
//! or PostgreSQL with `--postgres`) and the real harness and Anthropic client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use agentd_brain::HarnessConfig;
use agentd_session::{NewEvent, events};
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeOptions, FakeReply};
use agentd_wire::{ContentBlock, EventBody, SessionStatus};

#[derive(clap::Args)]
pub struct Args {
    /// Sequential turns timed for the overhead figures.
    #[arg(long, default_value_t = 300)]
    turns: usize,
    /// Appends timed for the log figures.
    #[arg(long, default_value_t = 3000)]
    appends: usize,
    /// Sessions in the throughput, memory and concurrency runs.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Upstream latency in the concurrency run, so every session is in flight at once.
    #[arg(long, default_value_t = 2000)]
    concurrent_latency_ms: u64,
    /// Measure on PostgreSQL: a server on which the bench may create databases (one per
    /// run), e.g. postgres://postgres@127.0.0.1:5432/postgres. Default: a SQLite file.
    #[arg(long)]
    postgres: Option<String>,
}

async fn world(fake: &FakeAnthropic, a: &Args) -> anyhow::Result<World> {
    let agent = json!({"name": "bench", "model": "claude-bench", "system": "be brief"});
    let cfg = HarnessConfig::default();
    let Some(admin) = &a.postgres else {
        return Ok(World::start(&fake.base_url(), agent, cfg).await);
    };
    let store = agentd_postgres::PgStore::open(&fresh_database(admin).await?, Default::default())
        .await
        .context("open the bench database")?;
    Ok(World::start_on(Arc::new(store), &fake.base_url(), agent, cfg).await)
}

/// A new, empty database on the server `admin` names; its URL.
pub(crate) async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to {admin}"))?;
    tokio::spawn(connection);
    let name = format!("bench_{:08x}", rand::random::<u32>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .context("create the bench database")?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// What the figures were measured on.
fn backend(a: &Args) -> &'static str {
    if a.postgres.is_some() {
        "PostgreSQL, fsync as the server is configured"
    } else {
        "SQLite WAL, synchronous=FULL"
    }
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn overhead(a: &Args) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(vec![FakeReply::text("ok")]).await;
    let w = world(&fake, a).await?;
    // Warm the connection pool, the page cache and the allocator.
    for _ in 0..20 {
        let s = w.session().await;
        w.say(&s, "warm").await;
        w.idle_at(&s, 0).await;
    }
    let skip = fake.request_count();
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    for i in 0..a.turns {
        let s = w.session().await;
        let accepted = w.say(&s, &format!("turn {i}")).await;
        let idle = w.idle_at(&s, 0).await;
        let t = fake
            .timings()
            .into_iter()
            .nth(skip + i)
            .context("the fake saw no request")?;
        inbound.push(t.received.saturating_duration_since(accepted));
        if let Some(last) = t.last_byte {
            outbound.push(idle.saturating_duration_since(last));
        }
    }
    inbound.sort();
    outbound.sort();
    println!(
        "harness overhead ({} sequential turns, zero-latency upstream over loopback HTTP):",
        a.turns
    );
    println!(
        "  user.message accepted -> upstream request received   p50 {}  p99 {}",
        ms(pct(&inbound, 0.5)),
        ms(pct(&inbound, 0.99))
    );
    println!(
        "  upstream last byte -> session.status_idle durable    p50 {}  p99 {}",
        ms(pct(&outbound, 0.5)),
        ms(pct(&outbound, 0.99))
    );
    Ok(())
}

async fn append_rate(a: &Args) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(vec![FakeReply::text("ok")]).await;
    let w = world(&fake, a).await?;
    let s = w.session().await;
    let body = || {
        NewEvent::new(EventBody::AgentMessage {
            content: vec![ContentBlock::text("x".repeat(300))],
        })
    };
    let mut lat = Vec::with_capacity(a.appends);
    let t0 = Instant::now();
    for _ in 0..a.appends {
        let t = Instant::now();
        w.store.append(&s, events(vec![body()])).await?;
        lat.push(t.elapsed());
    }
    let seq_rate = a.appends as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    println!("session log ({}, ~400-byte events):", backend(a));
    println!(
        "  one writer, one event per append: {seq_rate:.0} appends/s, p50 {} p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    let writers = 64;
    let mut sessions = Vec::new();
    for _ in 0..writers {
        sessions.push(w.session().await);
    }
    let per = a.appends / writers;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for s in sessions {
        let store = w.store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                store
                    .append(
                        &s,
                        events(vec![NewEvent::new(EventBody::AgentMessage {
                            content: vec![ContentBlock::text("x".repeat(300))],
                        })]),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = (per * writers) as f64 / t0.elapsed().as_secs_f64();
    println!("  {writers} concurrent writers (group commit): {rate:.0} appends/s");
    Ok(())
}

async fn throughput_and_memory(a: &Args) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(vec![FakeReply::text("ok")]).await;
    let w = world(&fake, a).await?;
    let s = w.session().await;
    w.say(&s, "warm").await;
    w.idle_at(&s, 0).await;
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let w = Arc::new(w);
    for i in 0..a.sessions {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let s = w.session().await;
            w.say(&s, &format!("hello {i}")).await;
            w.idle_at(&s, 0).await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    let took = t0.elapsed();
    let rss1 = rss_kib();
    println!(
        "full turns ({} sessions started at once, zero-latency upstream):",
        a.sessions
    );
    println!(
        "  {:.0} sessions/s through create -> user.message -> model -> idle ({} total)",
        a.sessions as f64 / took.as_secs_f64(),
        ms(took)
    );
    println!(
        "  resident memory per idle session: {:.1} KiB ({} KiB -> {} KiB for {} sessions)",
        rss1.saturating_sub(rss0) as f64 / a.sessions as f64,
        rss0,
        rss1,
        a.sessions
    );
    Ok(())
}

async fn concurrency(a: &Args) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start_with(
        FakeOptions {
            first_byte_delay: Duration::from_millis(a.concurrent_latency_ms),
            ..FakeOptions::default()
        },
        vec![FakeReply::text("ok")],
    )
    .await;
    let w = Arc::new(world(&fake, a).await?);
    let mut sids = Vec::new();
    for _ in 0..a.sessions {
        sids.push(w.session().await);
    }
    let rss0 = rss_kib();
    let t0 = Instant::now();
    for (i, s) in sids.iter().enumerate() {
        w.say(s, &format!("concurrent {i}")).await;
    }
    let mut peak = 0;
    let mut peak_rss = rss0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        peak_rss = peak_rss.max(rss_kib());
        let mut running = 0;
        for s in &sids {
            if w.store.head(s).await?.status == SessionStatus::Running {
                running += 1;
            }
        }
        // Requests the upstream has received for sessions that have not finished.
        let received = fake.request_count();
        peak = peak.max(received.saturating_sub(a.sessions - running));
        if running == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{running} sessions still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "concurrency ({} sessions, {} ms upstream latency):",
        a.sessions, a.concurrent_latency_ms
    );
    println!(
        "  peak upstream requests in flight at once: {peak}; all idle after {}",
        ms(t0.elapsed())
    );
    println!(
        "  resident memory while in flight: +{:.1} KiB per running session",
        peak_rss.saturating_sub(rss0) as f64 / a.sessions as f64
    );
    Ok(())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    overhead(&a).await?;
    append_rate(&a).await?;
    throughput_and_memory(&a).await?;
    concurrency(&a).await?;
    Ok(())
}
