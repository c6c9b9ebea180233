//! The browser's first load: what the counter page `/` costs a visitor with an empty cache.
//!
//! The WASM bundle as the release site holds it (raw, and the gzip and brotli copies
//! `cargo leptos build --release --precompress` made), then the Playwright script
//! `end2end/bench/first-load.spec.ts` (outside the browser test suite) in Debian's Chromium
//! against the release server: the bytes a cold load transfers, with compression and with it
//! refused, and the time until the page is hydrated and until its first live event shows. The
//! script writes its medians to a file, read here.

use crate::Table;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn section(table: &mut Table) {
    let site = std::env::var_os("TIDINGS_SITE_ROOT")
        .map_or_else(|| workspace().join("target/site"), PathBuf::from);
    table.section("the browser's first load of `/` (release site, Chromium, loopback)");
    match bundle(&site) {
        Ok((raw, gzip, brotli)) => table.row(
            "WASM bundle: raw / gzip / brotli",
            format!("{} / {} / {}", kib(raw), kib(gzip), kib(brotli)),
        ),
        Err(error) => table.row("WASM bundle", format!("not measured: {error}")),
    }
    match first_load(&site) {
        Ok(figures) => {
            let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
            let runs = number("runs");
            table.row(
                format!("bytes transferred, cold cache (median of {runs} loads)"),
                kib(number("bytes") as u64),
            );
            if let Some(kinds) = figures["bytes_by_kind"].as_object() {
                let parts: Vec<String> = kinds
                    .iter()
                    .map(|(kind, bytes)| {
                        format!("{kind} {}", kib(bytes.as_f64().unwrap_or(0.0) as u64))
                    })
                    .collect();
                table.row("  of which", parts.join(", "));
            }
            table.row(
                "bytes transferred, compression refused (identity)",
                kib(number("bytes_identity") as u64),
            );
            table.row(
                "navigation start to hydrated page",
                format!("{:.0} ms", number("hydrated_ms")),
            );
            table.row(
                "navigation start to first live event shown",
                format!("{:.0} ms", number("first_event_ms")),
            );
            table.row(
                "  the same, compression refused",
                format!("{:.0} ms", number("first_event_ms_identity")),
            );
        }
        Err(error) => table.row("first load figures", format!("not measured: {error}")),
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The sizes of the site's `.wasm` files and of their `.gz` and `.br` copies.
fn bundle(site: &Path) -> Result<(u64, u64, u64), String> {
    let pkg = site.join("pkg");
    let entries = std::fs::read_dir(&pkg).map_err(|e| format!("{}: {e}", pkg.display()))?;
    let (mut raw, mut gzip, mut brotli) = (0, 0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let size = entry.metadata().map_or(0, |m| m.len());
        if name.ends_with(".wasm") {
            raw += size;
        } else if name.ends_with(".wasm.gz") {
            gzip += size;
        } else if name.ends_with(".wasm.br") {
            brotli += size;
        }
    }
    if raw == 0 {
        return Err(format!("no .wasm in {}", pkg.display()));
    }
    if gzip == 0 || brotli == 0 {
        return Err(
            "no .gz or .br copies: build with `cargo leptos build --release --precompress`".into(),
        );
    }
    Ok((raw, gzip, brotli))
}

/// Runs the Playwright script and returns its figures.
fn first_load(site: &Path) -> Result<serde_json::Value, String> {
    let binary = crate::server::binary().map_err(|e| e.to_string())?;
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let status = Command::new("npx")
        .args(["playwright", "test", "--config", "bench.config.ts"])
        .current_dir(workspace().join("end2end"))
        .env("TIDINGS_BIN", &binary)
        .env("TIDINGS_SITE_ROOT", site)
        .env("TIDINGS_BENCH_OUT", out.path())
        .status()
        .map_err(|e| format!("npx: {e} (`scripts/setup.sh --test` installs Playwright)"))?;
    if !status.success() {
        return Err(format!("the Playwright script failed ({status})"));
    }
    let text = std::fs::read_to_string(out.path()).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("its figures: {e}"))
}
