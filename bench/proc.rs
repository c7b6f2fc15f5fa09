//! What /proc says of a server process, for the benchmarks that run `carillon serve` (and
//! nginx) as processes of their own: their CPU time and memory, not the load generator's.

/// CPU seconds (user + system) of a process and its direct children (nginx's workers).
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks = |stat: &str| -> Option<(u64, u32)> {
        // Fields after the parenthesised command name.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime, ppid))
    };
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            if let Some((t, ppid)) = ticks(&stat)
                && (p == pid || ppid == pid)
            {
                total += t;
            }
        }
    }
    total as f64 / 100.0 // USER_HZ
}

/// A field of `/proc/<pid>/status` in bytes (VmRSS, VmHWM).
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
