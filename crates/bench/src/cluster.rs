//! `agentd-bench cluster`: what a client sees of real `agentd serve` processes, driven over
//! their HTTP API: one process on SQLite against 1, 2 and 4 processes on one PostgreSQL
//! database (full turns per second; a turn's latency from the POST of `user.message` to
//! `session.status_idle` on the stream), and failover time from kill -9 of a session's owner
//! to the session's next step on another process.
//!
//! The model is a zero-latency fake Messages API on loopback, in this process. With more than
//! one process, a turn is posted to one and its stream read from the next, as a load balancer
//! would spread them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use agentd_testkit::{FakeAnthropic, FakeOptions, FakeReply};

use crate::core::{fresh_database, ms, pct};
use crate::process::Client;

const KEY: &str = "sk-bench-cluster";

#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL server on which the bench may create databases (one per run), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    postgres: String,
    /// Process counts to measure on PostgreSQL.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    processes: Vec<usize>,
    /// Sessions started at once in the throughput run.
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// Sequential turns timed for the latency figures.
    #[arg(long, default_value_t = 200)]
    turns: usize,
    /// Kills in the failover run; each orphans `--failover-sessions` sessions.
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    #[arg(long, default_value_t = 20)]
    failover_sessions: usize,
    /// The lease in the failover run: a dead owner's sessions wait for it to expire.
    #[arg(long, default_value_t = 2)]
    lease_secs: u64,
    /// The agentd binary; by default the one beside this bench.
    #[arg(long)]
    agentd: Option<PathBuf>,
}

/// One `agentd serve`, killed when dropped.
struct Proc {
    child: tokio::process::Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Proc {
    async fn start(a: &Args, upstream: &str, database: Option<&str>) -> anyhow::Result<Proc> {
        let data = tempfile::tempdir()?;
        let exe = match &a.agentd {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("agentd"),
        };
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--sandbox", "none"])
            .arg("--data-dir")
            .arg(data.path())
            .env("AGENTD_API_KEY", KEY)
            .env("AGENTD_ANTHROPIC_BASE_URL", upstream)
            .env("AGENTD_ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("AGENTD_RATE_LIMIT", "0")
            .env("AGENTD_MAX_STREAMS_PER_KEY", "100000")
            .env("AGENTD_LEASE_SECS", a.lease_secs.to_string())
            .env("AGENTD_LOG", "warn");
        if let Some(db) = database {
            cmd.env("AGENTD_DATABASE_URL", db);
        }
        let (child, url) = crate::process::serve(cmd).await?;
        Ok(Proc {
            child,
            url,
            _data: data,
        })
    }
}

#[derive(Clone)]
struct Api(Client);

impl Api {
    fn new() -> Api {
        Api(Client::new(KEY))
    }

    fn req(&self, m: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.0.req(m, url)
    }

    async fn post(&self, base: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        self.0.post(format!("{base}{path}"), body).await
    }

    async fn status(&self, base: &str, sid: &str) -> anyhow::Result<String> {
        let v: Value = self
            .req(reqwest::Method::GET, format!("{base}/v1/sessions/{sid}"))
            .send()
            .await?
            .json()
            .await?;
        Ok(v["status"].as_str().unwrap_or_default().to_owned())
    }

    /// A session of agent `agent` made through `base`.
    async fn session(&self, base: &str, agent: &str, env: &str) -> anyhow::Result<String> {
        let s = self
            .post(
                base,
                "/v1/sessions",
                json!({"agent": agent, "environment_id": env}),
            )
            .await?;
        Ok(s["id"].as_str().context("a session id")?.to_owned())
    }

    async fn say(&self, base: &str, sid: &str, text: &str) -> anyhow::Result<()> {
        self.post(
            base,
            &format!("/v1/sessions/{sid}/events"),
            json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}),
        )
        .await
        .map(drop)
    }

    /// A turn as a client sees it: the stream opened on `watch`, the message posted to
    /// `post`; the time until `session.status_idle` arrives.
    async fn turn(
        &self,
        post: &str,
        watch: &str,
        sid: &str,
        text: &str,
    ) -> anyhow::Result<Duration> {
        let mut stream = self
            .req(
                reqwest::Method::GET,
                format!("{watch}/v1/sessions/{sid}/events/stream"),
            )
            .send()
            .await?;
        anyhow::ensure!(stream.status().is_success(), "stream: {}", stream.status());
        let t0 = Instant::now();
        self.say(post, sid, text).await?;
        let mut seen = String::new();
        while let Some(chunk) = stream.chunk().await? {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("session.status_idle") {
                return Ok(t0.elapsed());
            }
        }
        bail!("the stream ended before session.status_idle")
    }
}

/// The processes of one configuration, with an agent and an environment to use.
struct Cluster {
    procs: Vec<Proc>,
    api: Api,
    agent: String,
    env: String,
}

impl Cluster {
    async fn start(
        a: &Args,
        fake: &FakeAnthropic,
        n: usize,
        db: Option<&str>,
    ) -> anyhow::Result<Cluster> {
        let mut procs = Vec::new();
        for _ in 0..n {
            procs.push(Proc::start(a, &fake.base_url(), db).await?);
        }
        let api = Api::new();
        let base = procs[0].url.clone();
        let agent = api
            .post(
                &base,
                "/v1/agents",
                json!({"name": "bench", "model": "claude-bench"}),
            )
            .await?["id"]
            .as_str()
            .context("an agent id")?
            .to_owned();
        let env = api
            .post(&base, "/v1/environments", json!({"name": "bench"}))
            .await?["id"]
            .as_str()
            .context("an environment id")?
            .to_owned();
        Ok(Cluster {
            procs,
            api,
            agent,
            env,
        })
    }

    fn url(&self, i: usize) -> &str {
        &self.procs[i % self.procs.len()].url
    }

    async fn latency(&self, turns: usize) -> anyhow::Result<Vec<Duration>> {
        for i in 0..20 {
            let sid = self
                .api
                .session(self.url(i), &self.agent, &self.env)
                .await?;
            self.api
                .turn(self.url(i), self.url(i + 1), &sid, "warm")
                .await?;
        }
        let mut out = Vec::with_capacity(turns);
        for i in 0..turns {
            let sid = self
                .api
                .session(self.url(i), &self.agent, &self.env)
                .await?;
            out.push(
                self.api
                    .turn(self.url(i), self.url(i + 1), &sid, "hello")
                    .await?,
            );
        }
        out.sort();
        Ok(out)
    }

    async fn throughput(self: &Arc<Self>, sessions: usize) -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..sessions {
            let c = self.clone();
            tasks.spawn(async move {
                let sid = c.api.session(c.url(i), &c.agent, &c.env).await?;
                c.api.turn(c.url(i), c.url(i + 1), &sid, "hello").await
            });
        }
        while let Some(t) = tasks.join_next().await {
            t??;
        }
        Ok(sessions as f64 / t0.elapsed().as_secs_f64())
    }
}

async fn configuration(
    a: &Args,
    fake: &FakeAnthropic,
    n: usize,
    db: Option<&str>,
) -> anyhow::Result<()> {
    let label = match db {
        None => "SQLite, 1 process".to_owned(),
        Some(_) => format!("PostgreSQL, {n} process{}", if n == 1 { "" } else { "es" }),
    };
    let c = Arc::new(Cluster::start(a, fake, n, db).await?);
    let lat = c.latency(a.turns).await?;
    let rate = c.throughput(a.sessions).await?;
    println!(
        "  {label:<26} {rate:>6.0} sessions/s   turn p50 {}  p99 {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    Ok(())
}

/// Kill the owner of `failover_sessions` sessions mid-request; the time until each one's
/// next model request, made by the surviving process.
async fn failover(a: &Args, fake: &FakeAnthropic) -> anyhow::Result<Vec<Duration>> {
    let db = fresh_database(&a.postgres).await?;
    let mut c = Cluster::start(a, fake, 2, Some(&db)).await?;
    // Slow enough that the owner dies with every request in flight.
    fake.set_options(FakeOptions {
        first_byte_delay: Duration::from_secs(a.lease_secs * 3),
        ..FakeOptions::default()
    });
    let mut samples = Vec::new();
    for round in 0..a.failovers {
        let owner = c.procs[0].url.clone();
        let before = fake.request_count();
        let mut sids = Vec::new();
        for i in 0..a.failover_sessions {
            let sid = c.api.session(&owner, &c.agent, &c.env).await?;
            c.api
                .say(&owner, &sid, &format!("round {round} #{i}"))
                .await?;
            sids.push(sid);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while fake.request_count() < before + sids.len() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the owner did not call the model"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c.procs[0].child.start_kill()?;
        let killed = Instant::now();
        c.procs[0].child.wait().await?;
        let deadline = killed + Duration::from_secs(a.lease_secs * 10 + 30);
        while fake.request_count() < before + 2 * sids.len() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the sessions were not taken over"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.extend(
            fake.timings()
                .into_iter()
                .skip(before + sids.len())
                .map(|t| t.received.saturating_duration_since(killed)),
        );
        // Let the survivor finish them, then bring a fresh owner up for the next round.
        let survivor = c.procs[1].url.clone();
        for sid in &sids {
            while c.api.status(&survivor, sid).await? != "idle" {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "a taken-over session did not finish"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c.procs[0] = Proc::start(a, &fake.base_url(), Some(&db)).await?;
    }
    fake.set_options(FakeOptions::default());
    samples.sort();
    Ok(samples)
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let fake = FakeAnthropic::start(vec![FakeReply::text("ok")]).await;
    println!(
        "many processes through the HTTP API ({} sequential turns for latency, {} sessions at once for throughput; zero-latency upstream):",
        a.turns, a.sessions
    );
    configuration(&a, &fake, 1, None).await?;
    for &n in &a.processes {
        let db = fresh_database(&a.postgres).await?;
        configuration(&a, &fake, n, Some(&db)).await?;
    }
    let f = failover(&a, &fake).await?;
    println!(
        "failover (2 processes, --lease-secs {}; kill -9 of the owner -> the session's next model request on the other; {} sessions):",
        a.lease_secs,
        f.len()
    );
    println!(
        "  p50 {}  p99 {}  max {}",
        ms(pct(&f, 0.5)),
        ms(pct(&f, 0.99)),
        ms(f.last().copied().unwrap_or_default())
    );
    Ok(())
}
