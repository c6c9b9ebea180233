//! What a user deploys, over HTTP: the release `tidings` against nginx + nchan (see [`nchan`]),
//! the usual choice for an SSE server, in one run, each measured alike:
//!
//! - idle subscribers: how many of 19,000 the server holds, and its RSS growth per subscriber;
//! - server CPU per delivered event, for a burst (1,000 subscribers, 1,000 publishes from 4
//!   keep-alive publishers as fast as they are answered) and steady (10,000 subscribers of one
//!   topic, 5 publishes/s for 10 s), with the steady run's publish→receive p50 and p99;
//! - publishes/s acknowledged for 64 keep-alive publishers (Tidings: durable; nchan: in memory);
//! - the time one subscriber takes to resume the 100,000 updates it missed (`Last-Event-ID`;
//!   published at 20,000/s, which nchan's ids can tell apart).
//!
//! And Tidings on HTTPS (HTTP/1.1 over TLS 1.3, one connection per subscriber, publishers on
//! HTTPS too; a certificate made by `openssl` for the section, [`crate::tls`]), in a table of
//! its own beside its plain-HTTP figures of the same runs, with their ratio: the idle
//! subscribers held and their RSS, and the burst's CPU per delivered event; and the idle
//! subscribers again as HTTP/2 streams ([`H2_STREAMS_PER_CONNECTION`] on each TLS connection,
//! the server's default limit), on a server of their own, against the plain HTTP/1.1 figures.
//! nchan over TLS is not measured.
//!
//! Each server runs on CPU 0 alone (Tidings with one tokio worker thread, nginx with one worker
//! process); the load generator ([`crate::load`]) runs on CPU 1: the subscribers on one thread,
//! the publishers on another. Its CPU time is noted, so that a figure it limited can be told. A
//! server's CPU is its process's (nginx: its worker's) user + system time from `/proc`, over the
//! deliveries its subscribers counted.
//!
//! Every update's data says its number and when it was sent, padded to 100 bytes; every run
//! counts missing and duplicate deliveries, and a run with any is reported failed, not as a
//! figure. The figures are medians of [`RUNS`] runs; each run starts every server afresh.

mod nchan;
mod runs;
mod servers;

use crate::{Table, load::Losses, median, server::Problems, server::pin};
use servers::{KINDS, Kind, Server};
use std::{io, time::Duration};

const RUNS: usize = 3;
/// The server's CPU, and the load generator's.
const SERVER_CPU: usize = 0;
const LOAD_CPU: usize = 1;
const IDLE: usize = 19_000;
/// HTTP/2 streams on one connection: `--max-streams-per-connection`'s default.
const H2_STREAMS_PER_CONNECTION: usize = 100;
const BURST_SUBSCRIBERS: usize = 1000;
const BURST_UPDATES: u64 = 1000;
const BURST_PUBLISHERS: u64 = 4;
const STEADY_SUBSCRIBERS: usize = 10_000;
const STEADY_RATE: u64 = 5;
const STEADY_SECONDS: u64 = 10;
/// Publishers of the steady run, taking turns: each has this many periods to be answered
/// before the schedule slips.
const STEADY_PUBLISHERS: u64 = 10;
const PUBLISHERS: u64 = 64;
/// Publishes timed for publishes/s, as fast as they are answered.
const RATE_UPDATES: u64 = 100_000;
const REPLAY_UPDATES: u64 = 100_000;

/// The rows of the table, in order.
#[derive(Clone, Copy)]
enum Row {
    Held,
    IdleRss,
    BurstCpu,
    SteadyCpu,
    SteadyP50,
    SteadyP99,
    Publishes,
    ReplayTime,
    ReplayRate,
    /// HTTPS only: idle subscribers as HTTP/2 streams.
    H2Held,
    H2IdleRss,
}

/// How many [`Row`]s there are.
const ROW_COUNT: usize = 11;

/// The rows measured over HTTPS.
const TLS_ROWS: [Row; 5] = [
    Row::Held,
    Row::IdleRss,
    Row::BurstCpu,
    Row::H2Held,
    Row::H2IdleRss,
];

const ROWS: [Row; 9] = [
    Row::Held,
    Row::IdleRss,
    Row::BurstCpu,
    Row::SteadyCpu,
    Row::SteadyP50,
    Row::SteadyP99,
    Row::Publishes,
    Row::ReplayTime,
    Row::ReplayRate,
];

impl Row {
    fn label(self) -> String {
        match self {
            Row::Held => format!("idle subscribers held ({} asked)", grouped(IDLE as f64)),
            Row::IdleRss => "RSS per idle subscriber (after - before, over held)".into(),
            Row::BurstCpu => format!(
                "server CPU per delivered event, burst ({} subscribers x {} publishes)",
                grouped(BURST_SUBSCRIBERS as f64),
                grouped(BURST_UPDATES as f64)
            ),
            Row::SteadyCpu => format!(
                "server CPU per delivered event, steady ({} subscribers, {STEADY_RATE}/s for \
                 {STEADY_SECONDS} s)",
                grouped(STEADY_SUBSCRIBERS as f64)
            ),
            Row::SteadyP50 => "  publish→receive p50, steady".into(),
            Row::SteadyP99 => "  publish→receive p99, steady".into(),
            Row::Publishes => {
                format!("publishes/s acknowledged ({PUBLISHERS} keep-alive publishers)")
            }
            Row::ReplayTime => format!(
                "replay: resume {} missed updates",
                grouped(REPLAY_UPDATES as f64)
            ),
            Row::ReplayRate => "  the same, in MB/s (bytes on the wire)".into(),
            Row::H2Held => format!(
                "HTTP/2: idle subscribers held as streams, {H2_STREAMS_PER_CONNECTION} per \
                 connection (HTTP: over HTTP/1.1)"
            ),
            Row::H2IdleRss => "  RSS per idle subscriber, HTTP/2 (HTTP: over HTTP/1.1)".into(),
        }
    }

    /// The row of the plain-HTTP figure an HTTPS row is set against.
    fn plain(self) -> Row {
        match self {
            Row::H2Held => Row::Held,
            Row::H2IdleRss => Row::IdleRss,
            row => row,
        }
    }

    fn target(self) -> &'static str {
        match self {
            Row::IdleRss => "≤ 8 KiB",
            Row::BurstCpu => "≤ 0.5 µs",
            Row::SteadyCpu => "≤ 7 µs",
            Row::SteadyP99 => "≤ 60 ms",
            Row::Publishes => "≥ 20,000 /s",
            _ => "",
        }
    }

    fn format(self, value: f64, kind: Kind) -> String {
        match self {
            Row::Held | Row::H2Held => grouped(value),
            Row::IdleRss | Row::H2IdleRss => format!("{value:.1} KiB"),
            Row::BurstCpu | Row::SteadyCpu => format!("{value:.2} µs"),
            Row::SteadyP50 | Row::SteadyP99 => format!("{value:.1} ms"),
            Row::Publishes if kind == Kind::Nchan => format!("{} /s in memory", grouped(value)),
            Row::Publishes => format!("{} /s durable", grouped(value)),
            Row::ReplayTime => format!("{} ms", grouped(value)),
            Row::ReplayRate => format!("{value:.1} MB/s"),
        }
    }

    /// Whether Tidings' figure over nchan's means anything (not durable against in memory).
    fn has_ratio(self) -> bool {
        !matches!(self, Row::Publishes)
    }
}

/// One server's figures over the runs.
struct Column {
    kind: Kind,
    /// Per row, what each run measured, or why it failed.
    cells: Vec<Vec<Result<f64, String>>>,
    missing: u64,
    duplicates: u64,
    /// Why the server could not be measured at all, if so.
    not_measured: Option<String>,
    /// The load generator's CPU over wall time, per phase and run.
    load_busy: Vec<(&'static str, f64)>,
    problems: Problems,
}

impl Column {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            cells: (0..ROW_COUNT).map(|_| Vec::new()).collect(),
            missing: 0,
            duplicates: 0,
            not_measured: None,
            load_busy: Vec::new(),
            problems: Problems::default(),
        }
    }

    fn add_problems(&mut self, problems: Problems) {
        self.problems.count += problems.count;
        if self.problems.first.is_empty() {
            self.problems.first = problems.first;
        }
    }

    fn set(&mut self, row: Row, value: Result<f64, String>) {
        self.cells[row as usize].push(value);
    }

    /// Counts a run's losses; the figure if there were none, else why the run failed.
    fn check(&mut self, losses: &Losses, refused: usize, figure: f64) -> Result<f64, String> {
        self.missing += losses.missing;
        self.duplicates += losses.duplicates;
        if losses.failed() || refused > 0 {
            return Err(format!("{}, {refused} publishes refused", losses.summary()));
        }
        Ok(figure)
    }

    /// The median of a row's runs, or a failure (with the first reason, for the notes).
    fn median(&self, row: Row) -> Result<f64, String> {
        let runs = &self.cells[row as usize];
        if let Some(reason) = runs.iter().find_map(|r| r.clone().err()) {
            let failed = runs.iter().filter(|r| r.is_err()).count();
            return Err(format!(
                "failed in {failed} of {} runs: {reason}",
                runs.len()
            ));
        }
        if runs.is_empty() {
            return Err("not measured".into());
        }
        Ok(median(runs.iter().filter_map(|r| r.clone().ok()).collect()))
    }

    fn busy(&self, phase: &str) -> Option<f64> {
        let values: Vec<f64> = self
            .load_busy
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, v)| *v)
            .collect();
        (!values.is_empty()).then(|| median(values))
    }
}

/// The section: runs on a thread of its own, on [`LOAD_CPU`] (the servers on [`SERVER_CPU`]).
pub fn section(table: &mut Table, open_files: u64) {
    std::thread::scope(|scope| {
        let measuring = scope.spawn(|| {
            let pinned = pin(LOAD_CPU);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(measure(table, open_files, pinned));
        });
        if let Err(panic) = measuring.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

async fn measure(table: &mut Table, open_files: u64, pinned: io::Result<()>) {
    let cpu = pinned.as_ref().ok().map(|()| SERVER_CPU);
    table.section(match &pinned {
        Ok(()) => format!(
            "HTTP over loopback: the release tidings (one tokio worker; on HTTP, and on HTTPS) \
             and nginx + nchan (one worker), each on CPU {SERVER_CPU} alone, the load generator \
             on CPU {LOAD_CPU}; medians of {RUNS} runs"
        ),
        Err(error) => format!(
            "HTTP over loopback: the release tidings (one tokio worker; on HTTP, and on HTTPS) \
             and nginx + nchan (one worker), NOT pinned (CPU {LOAD_CPU}: {error}); medians of \
             {RUNS} runs"
        ),
    });
    // Each subscriber is one open file here; keep 1000 for everything else.
    let idle = IDLE.min(open_files.saturating_sub(1000) as usize);
    let certificate = crate::tls::Certificate::new().map_err(|e| e.to_string());
    let mut columns = KINDS.map(Column::new);
    for run in 1..=RUNS {
        for column in &mut columns {
            if column.not_measured.is_some() {
                continue;
            }
            match Server::start(column.kind, cpu, open_files, &certificate) {
                Ok(server) => {
                    one_run(&server, column, run, idle).await;
                    column.add_problems(server.problems());
                }
                Err(error) => column.not_measured = Some(error.to_string()),
            }
            // HTTP/2 on a server of its own, as fresh as the others' idle runs find theirs.
            if column.kind == Kind::TidingsTls && column.not_measured.is_none() {
                let h2 = match Server::start(column.kind, cpu, open_files, &certificate) {
                    Ok(server) => {
                        let h2 = runs::idle_streams(&server, idle, H2_STREAMS_PER_CONNECTION).await;
                        column.add_problems(server.problems());
                        h2
                    }
                    Err(error) => Err(error),
                };
                let name = format!("Tidings HTTPS run {run}: idle over HTTP/2");
                set_idle(column, [Row::H2Held, Row::H2IdleRss], &name, h2);
            }
        }
    }
    print_table(table, &columns);
}

/// Sets an idle run's two rows (subscribers held, RSS per held one), or its error in both.
fn set_idle(
    column: &mut Column,
    [held_row, rss_row]: [Row; 2],
    name: &str,
    run: io::Result<(usize, f64)>,
) {
    match run {
        Ok((held, kib)) => {
            column.set(held_row, Ok(held as f64));
            column.set(rss_row, Ok(kib));
        }
        Err(error) => {
            println!("   {name}: {error}");
            column.set(held_row, Err(error.to_string()));
            column.set(rss_row, Err(error.to_string()));
        }
    }
}

/// Every figure once (on HTTPS, [`TLS_ROWS`] but HTTP/2's, which get a server of their own),
/// on a server started for this run.
async fn one_run(server: &Server, column: &mut Column, run: usize, idle: usize) {
    let name = format!("{} run {run}", server.kind().name());
    let idle_run = runs::idle_subscribers(server, idle).await;
    set_idle(
        column,
        [Row::Held, Row::IdleRss],
        &format!("{name}: idle"),
        idle_run,
    );

    match runs::burst(server).await {
        Ok(run) => {
            println!("   {name}: burst: {}", run.summary());
            column.load_busy.push(("burst", run.load_busy));
            let figure = run.cpu_per_event();
            let figure = column.check(&run.losses, run.refused, figure);
            column.set(Row::BurstCpu, figure);
        }
        Err(error) => {
            println!("   {name}: burst: {error}");
            column.set(Row::BurstCpu, Err(error.to_string()));
        }
    }
    if server.kind() == Kind::TidingsTls {
        return;
    }

    match runs::steady(server).await {
        Ok(run) => {
            let (q, max) = run.latencies.quantiles_ms(&[0.5, 0.99]);
            println!(
                "   {name}: steady: {}; p50 {:.1} ms, p99 {:.1} ms, max {max:.1} ms",
                run.summary(),
                q[0],
                q[1]
            );
            column.load_busy.push(("steady", run.load_busy));
            let figure = run.cpu_per_event();
            let mut checked = column.check(&run.losses, run.refused, figure);
            let period = Duration::from_micros(1_000_000 / STEADY_RATE);
            if checked.is_ok() && run.behind > period {
                checked = Err(format!(
                    "the publishers fell {:.0} ms behind their schedule (answers too slow)",
                    run.behind.as_secs_f64() * 1e3
                ));
            }
            column.set(Row::SteadyCpu, checked.clone());
            column.set(Row::SteadyP50, checked.clone().map(|_| q[0]));
            column.set(Row::SteadyP99, checked.map(|_| q[1]));
        }
        Err(error) => {
            println!("   {name}: steady: {error}");
            for row in [Row::SteadyCpu, Row::SteadyP50, Row::SteadyP99] {
                column.set(row, Err(error.to_string()));
            }
        }
    }

    match runs::publish_and_replay(server).await {
        Ok(run) => {
            println!("   {name}: {}", run.summary());
            column.load_busy.push(("replay", run.load_busy));
            column.set(Row::Publishes, Ok(run.publishes_per_second));
            let seconds = run.took.as_secs_f64();
            let checked = column.check(&run.losses, 0, seconds * 1e3);
            column.set(Row::ReplayTime, checked.clone());
            column.set(
                Row::ReplayRate,
                checked.map(|_| run.bytes as f64 / seconds / 1e6),
            );
        }
        Err(error) => {
            println!("   {name}: publishes and replay: {error}");
            for row in [Row::Publishes, Row::ReplayTime, Row::ReplayRate] {
                column.set(row, Err(error.to_string()));
            }
        }
    }
}

/// `value` rounded, its thousands apart: `19,000`.
fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut text = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    if value < -0.5 {
        text.insert(0, '-');
    }
    text
}

/// `value` to three significant digits.
fn ratio(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value:.2}");
    }
    let magnitude = value.abs().log10().floor().clamp(-6.0, 6.0) as i32;
    let digits = (2 - magnitude).clamp(0, 6) as usize;
    format!("{value:.digits$}")
}

/// Why cells failed, each reason once (a failed run fails all the rows it measures): numbered
/// notes beneath the tables.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    /// A column's median for `row`, formatted, and its value; or why there is none.
    fn cell(&mut self, column: &Column, row: Row) -> (String, Option<f64>) {
        if let Some(reason) = &column.not_measured {
            return if matches!(row, Row::Held) {
                (format!("not measured: {reason}"), None)
            } else {
                ("-".into(), None)
            };
        }
        match column.median(row) {
            Ok(value) => (row.format(value, column.kind), Some(value)),
            Err(reason) => {
                let note = format!("{}: {reason}", column.kind.name());
                let n = match self.0.iter().position(|n| *n == note) {
                    Some(i) => i + 1,
                    None => {
                        self.0.push(note);
                        self.0.len()
                    }
                };
                (format!("failed [{n}]"), None)
            }
        }
    }

    /// A row of two columns (the second's figure of `second_row`) and the first's figure over
    /// the second's.
    fn row(
        &mut self,
        (row, first): (Row, &Column),
        (second_row, second): (Row, &Column),
        last: &str,
    ) -> [String; 5] {
        let (a, a_value) = self.cell(first, row);
        let (b, b_value) = self.cell(second, second_row);
        let ratio = match (a_value, b_value) {
            (Some(a), Some(b)) if row.has_ratio() && b > 0.0 => ratio(a / b),
            _ => String::new(),
        };
        [row.label(), a, b, ratio, last.to_owned()]
    }
}

fn losses(column: &Column) -> String {
    match column.not_measured {
        Some(_) => "-".to_owned(),
        None => format!("{} / {}", column.missing, column.duplicates),
    }
}

/// The tables: a row per figure, a column per server, their ratio and the target (Tidings
/// against nchan), then Tidings on HTTPS against itself on HTTP; failures and other notes
/// beneath.
fn print_table(table: &mut Table, columns: &[Column; 3]) {
    let [tidings, nchan, https] = columns;
    let mut notes = Notes::default();
    let mut grid = vec![[
        String::new(),
        "Tidings".to_owned(),
        "nchan".to_owned(),
        "ratio T/n".to_owned(),
        "target".to_owned(),
    ]];
    for row in ROWS {
        grid.push(notes.row((row, tidings), (row, nchan), row.target()));
    }
    grid.push([
        "missing / duplicate deliveries, all runs".into(),
        losses(tidings),
        losses(nchan),
        String::new(),
        "0 / 0".into(),
    ]);
    print_grid(table, &grid);

    table.line("");
    let mut grid = vec![[
        "Tidings over HTTPS (TLS 1.3; HTTP/1.1 unless said), same runs".to_owned(),
        "HTTPS".to_owned(),
        "HTTP".to_owned(),
        "ratio S/H".to_owned(),
        String::new(),
    ]];
    for row in TLS_ROWS {
        grid.push(notes.row((row, https), (row.plain(), tidings), ""));
    }
    grid.push([
        "missing / duplicate deliveries, all runs".into(),
        losses(https),
        losses(tidings),
        String::new(),
        String::new(),
    ]);
    print_grid(table, &grid);
    table.line(
        "HTTPS: rustls with ring on both ends, TLS 1.3, X25519, AES-128-GCM, a P-256 \
         certificate made by openssl for the section; a full handshake per connection (no \
         resumption); publishers on HTTPS too; HTTP/2 by ALPN h2 (the h2 crate). nchan over TLS not measured (nginx's own TLS \
         would be its peer).",
    );

    for (i, note) in notes.0.iter().enumerate() {
        table.line(format!("[{}] {note}", i + 1));
    }
    for column in columns {
        let busy: Vec<String> = ["burst", "steady", "replay"]
            .iter()
            .filter_map(|p| Some(format!("{p} {:.0} %", column.busy(p)? * 100.0)))
            .collect();
        if !busy.is_empty() {
            table.line(format!(
                "load generator's CPU while loading {} (median): {}",
                column.kind.name(),
                busy.join(", ")
            ));
        }
        if let Some(first) = column.problems.first.first() {
            table.line(format!(
                "{} logged {} WARN/ERROR lines; the first: {}",
                column.kind.name(),
                column.problems.count,
                first.trim()
            ));
        }
    }
}

/// Rows of five cells, aligned: the first to the left, the others to the right.
fn print_grid(table: &mut Table, grid: &[[String; 5]]) {
    let widths: Vec<usize> = (0..5)
        .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in grid {
        let mut line = format!("{:<1$}", row[0], widths[0]);
        for (i, text) in row.iter().enumerate().skip(1) {
            line += &format!("  {text:>0$}", widths[i]);
        }
        table.line(line.trim_end().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(grouped(19_000.0), "19,000");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(0.0), "0");
        assert_eq!(ratio(0.002_93), "0.00293");
        assert_eq!(ratio(420.3), "420");
        assert_eq!(ratio(1.0), "1.00");
        assert_eq!(ratio(0.0), "0.00");
    }

    fn printed(columns: &[Column; 3]) -> Vec<String> {
        let mut table = Table::default();
        print_table(&mut table, columns);
        table
            .entries
            .iter()
            .filter_map(|e| match e {
                crate::Entry::Line(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_server_not_measured_says_why_and_the_other_prints() {
        let mut tidings = Column::new(Kind::Tidings);
        for row in ROWS {
            tidings.set(row, Ok(2.0));
        }
        let mut nchan = Column::new(Kind::Nchan);
        nchan.not_measured = Some("libnginx-mod-nchan is not installed".into());
        let mut https = Column::new(Kind::TidingsTls);
        for row in TLS_ROWS {
            https.set(row, Ok(6.0));
        }
        let lines = printed(&[tidings, nchan, https]);
        assert!(lines[1].contains("not measured: libnginx-mod-nchan is not installed"));
        assert!(lines[2].contains("2.0 KiB") && lines[2].contains(" - "));
        assert!(lines.iter().all(|l| !l.contains("failed")));
        // HTTPS against HTTP: 6.0 over 2.0.
        let rss = lines
            .iter()
            .rfind(|l| l.starts_with("RSS per idle subscriber"))
            .unwrap();
        assert!(rss.contains("6.0 KiB") && rss.contains("2.0 KiB") && rss.ends_with("3.00"));
    }

    #[test]
    fn https_without_a_certificate_says_why() {
        let mut columns = KINDS.map(Column::new);
        for row in ROWS {
            columns[0].set(row, Ok(1.0));
            columns[1].set(row, Ok(1.0));
        }
        columns[2].not_measured = Some("no certificate: cannot run openssl".into());
        let lines = printed(&columns);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("not measured: no certificate: cannot run openssl"))
        );
        assert!(lines.iter().all(|l| !l.contains("failed")));
    }

    #[test]
    fn a_failed_run_fails_its_rows_with_one_note() {
        let mut columns = KINDS.map(Column::new);
        for column in &mut columns {
            for &row in ROWS.iter().chain(&TLS_ROWS[3..]) {
                column.set(row, Ok(1.0));
            }
        }
        for row in [Row::SteadyCpu, Row::SteadyP50, Row::SteadyP99] {
            columns[1].set(row, Err("3 missing, 0 duplicates".into()));
        }
        let lines = printed(&columns);
        assert_eq!(lines.iter().filter(|l| l.contains("failed [1]")).count(), 3);
        assert!(
            lines
                .iter()
                .any(|l| l == "[1] nchan: failed in 1 of 2 runs: 3 missing, 0 duplicates")
        );
        assert!(!lines.iter().any(|l| l.starts_with("[2]")));
    }
}
