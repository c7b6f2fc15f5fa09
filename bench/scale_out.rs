//! The scale-out comparison (`bench/run --scale-out`, also part of every `bench/run`): the same
//! load, in the same run, against
//! - one node on the embedded store (SQLite),
//! - one node on PostgreSQL,
//! - three nodes on PostgreSQL with NATS between them, the load spread round-robin over them
//!   (connection i talks to node i mod 3, as behind a round-robin load balancer).
//!
//! Each deployment starts fresh (its own data directories, its own PostgreSQL schema). Server CPU
//! is the sum over the nodes; the database's CPU (every local `postgres` process) is reported
//! apart, since on this machine it competes for the same cores.

use super::*;

struct Deployment {
    name: &'static str,
    nodes: usize,
    postgres: bool,
}

const DEPLOYMENTS: [Deployment; 3] = [
    Deployment {
        name: "1 node, embedded store",
        nodes: 1,
        postgres: false,
    },
    Deployment {
        name: "1 node, PostgreSQL",
        nodes: 1,
        postgres: true,
    },
    Deployment {
        name: "3 nodes, PostgreSQL + NATS",
        nodes: 3,
        postgres: true,
    },
];

const OPERATIONS: [&str; 5] = [
    "GetAttendee",
    "ListAttendees 100 of 250",
    "CreateMeeting",
    "CreateAttendee",
    "CreateAttendee, 64 connections",
];

struct Measured {
    deployment: &'static str,
    rows: Vec<(Row, f64)>,
}

/// CPU seconds of the local PostgreSQL servers: each postmaster (a `postgres` process whose
/// parent is not one) with its direct children, the backends and background workers
/// (`cpu_seconds` counts both).
fn postgres_cpu() -> f64 {
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| comm(*pid).trim() == "postgres")
        .filter(|pid| parent(*pid).is_none_or(|p| comm(p).trim() != "postgres"))
        .map(cpu_seconds)
        .sum()
}

fn measure_spread(
    name: &str,
    pids: &[u32],
    targets: &[(SocketAddr, Supply)],
    connections: usize,
    run_for: Duration,
) -> (Row, f64) {
    let node_cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let (before, db_before) = (node_cpu(), postgres_cpu());
    let mut out = with_connections(connections, || load_now(targets, run_for, None, 200, false));
    let (cpu, db_cpu) = (node_cpu() - before, postgres_cpu() - db_before);
    let row = summarize(name, &mut out, cpu, None);
    print_row(&row);
    let db_cores = db_cpu / out.elapsed.as_secs_f64();
    println!("  {:<44} database CPU {db_cores:.2} cores", "");
    (row, db_cores)
}

fn bench_deployment(
    d: &Deployment,
    binary: &Path,
    work: &Path,
    s: &Settings,
    postgres: &str,
    bus: Option<&str>,
) -> Measured {
    println!("\n== {}", d.name);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = d.postgres.then(|| {
        runtime
            .block_on(carillon::store::postgres::ScratchSchema::create(postgres))
            .expect("a scratch schema")
    });
    let subject = format!("carillonbench.{}", uuid::Uuid::new_v4().simple());
    let mut guards = Vec::new();
    let mut addrs = Vec::new();
    for n in 0..d.nodes {
        let dir = work.join(format!("scale-out-{}-{n}", d.name.replace([' ', ','], "")));
        std::fs::create_dir_all(&dir).expect("data dir");
        let mut env: Vec<(&str, String)> = vec![("CARILLON_ADMIN_LISTEN", "off".into())];
        if let Some(schema) = &scratch {
            env.push(("CARILLON_STORE", schema.url.clone()));
        }
        if let (Some(bus), true) = (bus, d.nodes > 1) {
            env.push(("CARILLON_BUS", bus.to_string()));
            env.push(("CARILLON_BUS_SUBJECT", subject.clone()));
        }
        let (guard, addr) = start_carillon(binary, &dir, &env);
        guards.push(guard);
        addrs.push(addr);
    }
    let pids: Vec<u32> = guards.iter().map(|g| g.0.id()).collect();
    // Every node has read the others' first beats, so placement spreads the meetings.
    std::thread::sleep(Duration::from_secs(3));

    // Reads: a 250-attendee meeting; each node replays requests signed for its own address.
    let (status, body) = call_now(
        addrs[0],
        "POST",
        "/meetings",
        &create_meeting_spec("reads", 0).2,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let meeting = string_values(&body, "MeetingId").remove(0);
    let mut attendee = String::new();
    for start in (0..250).step_by(PAGE) {
        let spec = batch_spec(&meeting, &format!("r{start}"), PAGE.min(250 - start));
        let (status, body) = call_now(addrs[0], spec.0, &spec.1, &spec.2);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        if attendee.is_empty() {
            attendee = string_values(&body, "AttendeeId").remove(0);
        }
    }
    let replay = |path: &str| -> Vec<(SocketAddr, Supply)> {
        addrs
            .iter()
            .map(|a| {
                let request = signed(*a, "GET", path, b"", SystemTime::now());
                (*a, Supply::Replay(Arc::new(request)))
            })
            .collect()
    };
    let run_for = s.run_for;
    let mut rows = Vec::new();
    let get = replay(&format!("/meetings/{meeting}/attendees/{attendee}"));
    rows.push(measure_spread(
        OPERATIONS[0],
        &pids,
        &get,
        CONNECTIONS,
        run_for,
    ));
    let list = replay(&format!("/meetings/{meeting}/attendees?max-results={PAGE}"));
    rows.push(measure_spread(
        OPERATIONS[1],
        &pids,
        &list,
        CONNECTIONS,
        run_for,
    ));

    // Writes: unique requests, split evenly over the nodes, each signed for its node.
    let split = |specs: Vec<(&'static str, String, Vec<u8>)>| -> Vec<(SocketAddr, Supply)> {
        let mut per_node: Vec<Vec<(&'static str, String, Vec<u8>)>> = vec![Vec::new(); d.nodes];
        for (i, spec) in specs.into_iter().enumerate() {
            per_node[i % d.nodes].push(spec);
        }
        addrs
            .iter()
            .zip(per_node)
            .map(|(a, specs)| (*a, Supply::once(sign_all_now(*a, specs))))
            .collect()
    };
    let meetings = split(
        (0..s.creates)
            .map(|i| create_meeting_spec("scale", i))
            .collect(),
    );
    rows.push(measure_spread(
        OPERATIONS[2],
        &pids,
        &meetings,
        CONNECTIONS,
        run_for,
    ));

    // CreateAttendee into meetings of at most 250, created beforehand through node 0.
    let homes: Vec<String> = (0..(2 * s.creates).div_ceil(250))
        .map(|i| {
            let (status, body) = call_now(
                addrs[0],
                "POST",
                "/meetings",
                &create_meeting_spec("homes", i).2,
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            string_values(&body, "MeetingId").remove(0)
        })
        .collect();
    let creates = |tag: &str, homes: &[String]| {
        split(
            (0..s.creates)
                .map(|i| {
                    (
                        "POST",
                        format!("/meetings/{}/attendees", homes[i % homes.len()]),
                        json!({ "ExternalUserId": format!("{tag}-{i}") })
                            .to_string()
                            .into_bytes(),
                    )
                })
                .collect(),
        )
    };
    let (first_half, second_half) = homes.split_at(homes.len() / 2);
    rows.push(measure_spread(
        OPERATIONS[3],
        &pids,
        &creates("c", first_half),
        CONNECTIONS,
        run_for,
    ));
    rows.push(measure_spread(
        OPERATIONS[4],
        &pids,
        &creates("w", second_half),
        64,
        run_for,
    ));
    drop(guards);
    if let Some(schema) = scratch {
        let _ = runtime.block_on(schema.remove());
    }
    Measured {
        deployment: d.name,
        rows,
    }
}

/// Runs the three deployments one after the other and writes
/// `bench/results/<date>-scale-out.md`.
pub fn run(
    binary: &Path,
    work: &Path,
    s: &Settings,
    postgres: &str,
    bus: Option<&str>,
    out_dir: &Path,
) {
    println!(
        "\ncarillon scale-out benchmark: {CONNECTIONS} connections spread over the nodes, {:?} per measurement",
        s.run_for
    );
    let measured: Vec<Measured> = DEPLOYMENTS
        .iter()
        .map(|d| bench_deployment(d, binary, work, s, postgres, bus))
        .collect();
    let rate = |m: &Measured, op: &str| {
        m.rows
            .iter()
            .find(|(r, _)| r.name == op)
            .map_or(0.0, |(r, _)| r.per_second)
    };
    let mut md = format!(
        "# Carillon scale-out benchmark{}\n\n\
         Loopback, {CONNECTIONS} keep-alive connections spread round-robin over the nodes (64 where \
         named), {:?} per measurement, {} cores shared by the load generator, the nodes and \
         PostgreSQL, release build, SigV4-signed requests. Reproduce: `bench/run --scale-out`.\n\n\
         | operation | deployment | req/s | p50 ms | p99 ms | nodes' CPU cores | database CPU cores | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        if s.quick { " (--quick)" } else { "" },
        s.run_for,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for op in OPERATIONS {
        for m in &measured {
            if let Some((r, db)) = m.rows.iter().find(|(r, _)| r.name == op) {
                md.push_str(&format!(
                    "| {op} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {db:.2} | {} |\n",
                    m.deployment, r.per_second, r.p50_ms, r.p99_ms, r.cpu_cores, r.errors
                ));
            }
        }
    }
    md.push_str(
        "\n| operation | PostgreSQL ÷ embedded (1 node each) | 3 nodes ÷ 1 node (PostgreSQL) |\n|---|---:|---:|\n",
    );
    for op in OPERATIONS {
        let (embedded, pg, three) = (
            rate(&measured[0], op),
            rate(&measured[1], op),
            rate(&measured[2], op),
        );
        md.push_str(&format!(
            "| {op} | {:.2}x | {:.2}x |\n",
            pg / embedded.max(1e-9),
            three / pg.max(1e-9)
        ));
    }
    println!("\n{md}");
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stamp = carillon::auth::sigv4::format_amz_date(unix);
    let date = stamp.get(0..8).unwrap_or("undated");
    let date = format!(
        "{}-{}-{}",
        date.get(0..4).unwrap_or(""),
        date.get(4..6).unwrap_or(""),
        date.get(6..8).unwrap_or("")
    );
    std::fs::create_dir_all(out_dir).expect("results dir");
    let path = out_dir.join(format!(
        "{date}-scale-out{}.md",
        if s.quick { "-quick" } else { "" }
    ));
    std::fs::write(&path, md).expect("write results");
    println!("written: {}", path.display());
}
