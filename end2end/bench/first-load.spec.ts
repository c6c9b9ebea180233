// `make bench ONLY=browser`: the counter page `/` loaded on a cold cache, several times, by
// Debian's Chromium against the release server and site. Reports (never asserts), as medians:
// the bytes the page load transferred (headers and bodies as they came over the wire: the
// document, JS, WASM, CSS and favicon; not the event stream, which runs for as long as the page
// is open), the same load with compression refused (`Accept-Encoding: identity`), and the time
// from navigation start until the page is hydrated and until the first live event shows (the
// first `#messages li`). Loopback, so the times are the machine's work, not a network's.
//
// The figures go to the file TIDINGS_BENCH_OUT names (JSON; the Rust bench prints them in its
// table) and to the console.

import * as fs from 'node:fs';
import { test, TidingsServer } from '../tests/server';
import type { Browser } from '@playwright/test';

const RUNS = Number(process.env.TIDINGS_BENCH_RUNS ?? 7);

type Load = { bytes: number; byKind: Record<string, number>; hydratedMs: number; firstEventMs: number };

/** One load of `url` in a fresh context (an empty cache), measured through the DevTools protocol. */
async function coldLoad(browser: Browser, url: string, identity: boolean): Promise<Load> {
  const context = await browser.newContext();
  const page = await context.newPage();
  // When the first number and the hydrated page appear, on the page's own clock (ms since
  // navigation start), recorded by an observer installed before any of the page's scripts.
  await page.addInitScript(() => {
    const seen = (window as any).__seen = {} as Record<string, number>;
    new MutationObserver(() => {
      if (seen.firstEvent === undefined && document.querySelector('#messages li')) {
        seen.firstEvent = performance.now();
      }
      if (seen.hydrated === undefined && document.querySelector('main[data-hydrated="true"]')) {
        seen.hydrated = performance.now();
      }
    }).observe(document, { childList: true, subtree: true, attributes: true });
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  if (identity) {
    await cdp.send('Network.setExtraHTTPHeaders', { headers: { 'Accept-Encoding': 'identity' } });
  }
  const kinds = new Map<string, string>();
  const byKind: Record<string, number> = {};
  let bytes = 0;
  cdp.on('Network.responseReceived', (e: any) => {
    const type = String(e.response.mimeType ?? '');
    const kind = type === 'text/event-stream' ? 'stream'
      : type.includes('html') ? 'document'
      : type.includes('wasm') ? 'wasm'
      : type.includes('javascript') ? 'js'
      : type.includes('css') ? 'css'
      : 'other';
    kinds.set(e.requestId, kind);
  });
  cdp.on('Network.loadingFinished', (e: any) => {
    const kind = kinds.get(e.requestId) ?? 'other';
    if (kind === 'stream') return;
    bytes += e.encodedDataLength;
    byKind[kind] = (byKind[kind] ?? 0) + e.encodedDataLength;
  });
  await page.goto(url);
  await page.locator('#messages li').first().waitFor();
  await page.waitForLoadState('load');
  const seen = await page.evaluate(() => (window as any).__seen);
  await context.close();
  return { bytes, byKind, hydratedMs: seen.hydrated, firstEventMs: seen.firstEvent };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

test('the counter page on a cold cache', async ({ browser }) => {
  // The counter's default pace (a number a second): the first one comes at once.
  const server = await TidingsServer.start(['--market-interval-ms', '0', '--monitor-interval-ms', '0']);
  try {
    // One load first, not counted: the server's and the disk's first touches.
    await coldLoad(browser, server.url, false);
    const compressed: Load[] = [];
    const identity: Load[] = [];
    for (let i = 0; i < RUNS; i++) {
      compressed.push(await coldLoad(browser, server.url, false));
      identity.push(await coldLoad(browser, server.url, true));
    }
    const kinds = [...new Set(compressed.flatMap((l) => Object.keys(l.byKind)))].sort();
    const result = {
      runs: RUNS,
      bytes: median(compressed.map((l) => l.bytes)),
      bytes_by_kind: Object.fromEntries(kinds.map((k) => [k, median(compressed.map((l) => l.byKind[k] ?? 0))])),
      bytes_identity: median(identity.map((l) => l.bytes)),
      hydrated_ms: median(compressed.map((l) => l.hydratedMs)),
      first_event_ms: median(compressed.map((l) => l.firstEventMs)),
      first_event_ms_identity: median(identity.map((l) => l.firstEventMs)),
    };
    console.log(JSON.stringify(result));
    if (process.env.TIDINGS_BENCH_OUT) {
      fs.writeFileSync(process.env.TIDINGS_BENCH_OUT, JSON.stringify(result));
    }
  } finally {
    await server.stop();
    fs.rmSync(server.dataDir, { recursive: true, force: true });
  }
});
