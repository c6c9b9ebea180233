// The live pages in Chromium: server-rendered first, then live through the hub.

import { Page } from '@playwright/test';
import { test, expect, FAST, TidingsServer, joinRoom, log, screenshot, send, token, watchConsole } from './server';

const PAGES: [string, string][] = [
  ['/', 'Real-time Updates'],
  ['/chat', 'Chat'],
  ['/chat/general', '#general'],
  ['/ticker', 'Ticker'],
  ['/news', 'News'],
  ['/monitor', 'Monitor'],
  ['/console', 'Hub console'],
];

test.use({ viewport: { width: 960, height: 640 } });

test('every page renders its content on the server, without JavaScript', async ({ browser, server }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  for (const [path, heading] of PAGES) {
    await page.goto(server.url + path);
    await expect(page.getByRole('heading', { level: 1, name: heading })).toBeVisible();
    await expect(page.getByRole('navigation', { name: 'Pages' })).toBeVisible();
  }
  // Server-rendered state, not a loading placeholder.
  for (const [path, selector] of [
    ['/ticker', '#ticker'],
    ['/chat/general', '#chat-log'],
    ['/news', '#headlines'],
    ['/monitor', '#metric-uptime'],
  ]) {
    await page.goto(server.url + path);
    // Attached, not necessarily visible: an empty list has no height.
    await expect(page.locator(selector)).toBeAttached();
    await expect(page.getByText(/^Loading/)).toHaveCount(0);
  }
  await context.close();
});

test('no page logs a console error, hydration included', async ({ page, server }) => {
  const errors = watchConsole(page);
  for (const [path, heading] of PAGES) {
    await page.goto(server.url + path);
    await expect(page.getByRole('heading', { level: 1, name: heading })).toBeVisible();
    if (path !== '/' && path !== '/chat' && path !== '/console') {
      await expect(page.locator('.live-badge').first()).toHaveText('open');
    }
  }
  expect(errors).toEqual([]);
});

// ---- Chat ----
// The chat's rate limit counts per address, and every browser context and request of a test
// comes from 127.0.0.1: each test has its own server and stays within one burst (5 messages;
// refused posts do not count).


test('two windows in a room see each other once, in order, and text stays text', async ({ browser, server }) => {
  const a = await joinRoom(await browser.newContext(), `${server.url}/chat/e2e-pair`, 'ann');
  const b = await joinRoom(await browser.newContext(), `${server.url}/chat/e2e-pair`, 'bob');
  await expect(a.locator('#presence')).toHaveText('2');
  const errors = [watchConsole(a), watchConsole(b)];

  const expected: string[] = [];
  for (const [page, who, text] of [
    [a, 'ann', 'hello from ann'],
    [b, 'bob', 'hi ann, bob here'],
    [a, 'ann', '<script>window.pwned = 1</script><b>not bold</b>'],
  ] as [Page, string, string][]) {
    await send(page, text);
    expected.push(`${who}${text}`);
    for (const p of [a, b]) {
      await expect(log(p)).toHaveText(expected);
    }
  }
  for (const p of [a, b]) {
    expect(await p.evaluate(() => (window as any).pwned)).toBeUndefined();
    await expect(p.locator('#chat-log b')).toHaveCount(0);
  }
  await screenshot(a, 'chat');
  expect(errors.flat()).toEqual([]);
});

test('a message that is too long, and a burst, keep the text and say why', async ({ browser }) => {
  // No refill during the test, however slow the machine: the burst is the whole allowance.
  const server = await TidingsServer.start([...FAST, '--chat-refill', '1h']);
  try {
    const page = await joinRoom(await browser.newContext(), `${server.url}/chat/e2e-limits`, 'ann');
    const long = 'x'.repeat(2001);
    await page.fill('#chat-text', long);
    await page.click('.chat-form button');
    await expect(page.locator('#chat-error')).toContainText('400');
    await expect(page.locator('#chat-error')).toContainText('1 to 2000');
    await expect(page.locator('#chat-text')).toHaveValue(long);

    // The burst allowance is 5; the sixth message in a row is refused.
    for (let i = 1; i <= 5; i++) {
      await send(page, `burst ${i}`);
    }
    await page.fill('#chat-text', 'one too many');
    await page.click('.chat-form button');
    await expect(page.locator('#chat-error')).toContainText('429');
    await expect(page.locator('#chat-text')).toHaveValue('one too many');
    await expect(log(page)).toHaveCount(5);
  } finally {
    await server.stop();
  }
});

test('without JavaScript the chat form sends, and the room shows the message after the redirect', async ({ browser, server }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const room = `${server.url}/chat/e2e-nojs`;
  await page.goto(room);
  await page.fill('#chat-name', 'ann');
  await page.fill('#chat-text', 'sent <b>without</b> JavaScript');
  await page.click('.chat-form button');
  await expect(page).toHaveURL(room);
  await expect(log(page)).toHaveText(['annsent <b>without</b> JavaScript']);
  await expect(page.locator('#chat-error')).toBeEmpty();
  // The name is remembered for the next message, and the next visit.
  await expect(page.locator('#chat-name')).toHaveValue('ann');
  await page.fill('#chat-text', 'and again');
  await page.click('.chat-form button');
  await expect(log(page)).toHaveText(['annsent <b>without</b> JavaScript', 'annand again']);
  await context.close();
});

test('without JavaScript a refused message says why, in the same words as with it', async ({ browser, server }) => {
  const cases: [string, string][] = [
    ['x'.repeat(2001), '400: the message must be 1 to 2000 characters'],
    ['   ', '400: the message must be 1 to 2000 characters'],
  ];
  const noScript = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
  const withScript = await joinRoom(await browser.newContext(), `${server.url}/chat/e2e-nojs-refused`, 'ann');
  await noScript.goto(`${server.url}/chat/e2e-nojs-refused`);
  for (const [text, reason] of cases) {
    await noScript.fill('#chat-name', 'ann');
    await noScript.fill('#chat-text', text);
    await noScript.click('.chat-form button');
    await expect(noScript.locator('#chat-error')).toHaveText(reason);
    await expect(noScript).toHaveURL(new RegExp(`/chat/e2e-nojs-refused\\?`));

    await withScript.fill('#chat-text', text);
    await withScript.click('.chat-form button');
    await expect(withScript.locator('#chat-error')).toHaveText(reason);
  }
  await expect(log(noScript)).toHaveCount(0);
  // A message sent after a refusal clears the reason.
  await noScript.fill('#chat-name', 'ann');
  await noScript.fill('#chat-text', 'fine now');
  await noScript.click('.chat-form button');
  await expect(noScript).toHaveURL(`${server.url}/chat/e2e-nojs-refused`);
  await expect(noScript.locator('#chat-error')).toBeEmpty();
  await expect(log(noScript)).toHaveText(['annfine now']);
});

test('after a server restart mid-conversation both windows go on without a gap or a duplicate', async ({ browser }) => {
  const first = await TidingsServer.start(FAST);
  const url = `${first.url}/chat/e2e-restart`;
  const a = await joinRoom(await browser.newContext(), url, 'ann');
  const b = await joinRoom(await browser.newContext(), url, 'bob');
  await send(a, 'before the restart');
  for (const p of [a, b]) await expect(log(p)).toHaveText(['annbefore the restart']);
  // A third window joins, so the last event both got is a presence count: one the hub sends
  // live, never stores, and forgets when it restarts.
  await joinRoom(await browser.newContext(), url, 'cat');
  for (const p of [a, b]) await expect(p.locator('#presence')).toHaveText('3');
  for (const p of [a, b]) await p.evaluate(() => ((window as any).beforeRestart = true));

  await first.kill();
  for (const p of [a, b]) await expect(p.locator('.live-badge')).toHaveAttribute('data-status', 'reconnecting');
  const second = await TidingsServer.start(FAST, first.port, first.dataDir);
  try {
    for (const p of [a, b]) await expect(p.locator('.live-badge')).toHaveText('open', { timeout: 20_000 });
    await send(b, 'after the restart');
    await send(a, 'and again');
    for (const p of [a, b]) {
      await expect(log(p)).toHaveText(['annbefore the restart', 'bobafter the restart', 'annand again']);
      // Resumed in place, not reloaded.
      expect(await p.evaluate(() => (window as any).beforeRestart)).toBe(true);
    }
  } finally {
    await second.stop();
  }
});

test('an update published between render and hydration appears exactly once', async ({ page, server, request }) => {
  // Hold the WASM back: the page is rendered but not yet live.
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  await page.route('**/pkg/tidings*.wasm', async (route) => {
    await gate;
    await route.continue();
  });
  await page.goto(`${server.url}/chat/e2e-handoff`, { waitUntil: 'domcontentloaded' });
  await expect(page.getByRole('heading', { name: '#e2e-handoff' })).toBeVisible();
  const post = (text: string) =>
    request.post(`${server.url}/api/chat/e2e-handoff`, {
      data: { name: 'srv', text },
    });
  expect((await post('between render and hydration')).status()).toBe(200);
  release();
  await expect(page.locator('.live-badge')).toHaveText('open');
  expect((await post('after hydration')).status()).toBe(200);
  await expect(log(page)).toHaveText(['srvbetween render and hydration', 'srvafter hydration']);
});

// ---- Ticker, monitor, news, console ----

test('ticker rows update live', async ({ page, server }) => {
  await page.goto(`${server.url}/ticker`);
  await expect(page.locator('.live-badge')).toHaveText('open');
  await expect(page.locator('#ticker tbody tr')).toHaveCount(6);
  // Every quote adds a point to the symbol's sparkline (and re-creates its row, which flashes).
  const sparkline = page.locator('#ticker tr[data-symbol="ACME"] polyline');
  const before = await sparkline.getAttribute('points');
  await expect.poll(() => sparkline.getAttribute('points')).not.toBe(before);
  await expect(page.locator('#ticker tr[data-symbol="ACME"] .price')).toHaveText(/^\d+\.\d\d$/);
  await screenshot(page, 'ticker');
});

test('monitor numbers move, and count a second page in and out, navigation included', async ({ browser, server }) => {
  const context = await browser.newContext();
  const monitor = await context.newPage();
  await monitor.goto(`${server.url}/monitor`);
  await expect(monitor.locator('.live-badge')).toHaveText('open');
  const uptime = monitor.locator('#metric-uptime .value');
  const first = await uptime.textContent();
  await expect.poll(() => uptime.textContent()).not.toBe(first);
  const subscribers = monitor.locator('#metric-subscribers .value');
  await expect(subscribers).toHaveText('1');

  // Another browser (the tabs of one share a connection: see tabs.spec.ts).
  const otherContext = await browser.newContext();
  const other = await otherContext.newPage();
  await other.goto(`${server.url}/ticker`);
  await expect(other.locator('.live-badge')).toHaveText('open');
  await expect(subscribers).toHaveText('2');
  // In-app navigation to a page without a live connection closes the ticker's.
  await other.getByRole('link', { name: 'Chat' }).click();
  await expect(other.getByRole('heading', { level: 1, name: 'Chat' })).toBeVisible();
  await expect(subscribers).toHaveText('1');
  await other.goto(`${server.url}/news`);
  await expect(subscribers).toHaveText('2');
  await other.close();
  await expect(subscribers).toHaveText('1');
  await screenshot(monitor, 'monitor');
  await context.close();
  await otherContext.close();
});

test('a headline published with a token appears at the top', async ({ page, server }) => {
  await page.goto(`${server.url}/news`);
  await expect(page.locator('.live-badge')).toHaveText('open');
  await page.getByText('Publish a headline').click();
  await page.fill('#news-token', token({ mercure: { publish: ['/news'] } }));
  for (const title of ['First: the hub is live', 'Second: tests pass']) {
    await page.fill('#news-title', title);
    await page.click('#news-form button');
    await expect(page.locator('.headline').first()).toHaveText(title);
  }
  await expect(page.locator('#news-result')).toContainText('published');
  await screenshot(page, 'news');
});

test('the console subscribes and publishes, and shows the 401 without a token', async ({ page, server }) => {
  await page.goto(`${server.url}/console`);
  await expect(page.locator('main')).toHaveAttribute('data-hydrated', 'true');
  await page.fill('#sub-selectors', 'https://example.com/console/{id}');
  await page.click('#console-subscribe button');
  await expect(page.locator('.live-badge')).toHaveText('open');

  await page.fill('#pub-topics', 'https://example.com/console/1');
  await page.fill('#pub-data', 'hello console');
  await page.fill('#pub-id', 'console-1');
  await page.fill('#pub-token', token({ mercure: { publish: ['*'] } }));
  await page.click('#console-publish button');
  await expect(page.locator('#pub-result')).toHaveText('200: published console-1');
  await expect(page.locator('#console-events .event').first().locator('.data')).toHaveText('hello console');
  await expect(page.locator('#console-events .event').first().locator('.id')).toHaveText('console-1');

  await page.fill('#pub-token', '');
  await page.click('#console-publish button');
  await expect(page.locator('#pub-result')).toContainText('401');
  await expect(page.locator('#pub-result')).toContainText('publishing needs a token');
  await screenshot(page, 'console');
});

test('the home page links to every live page', async ({ page, server }) => {
  await page.goto(server.url);
  await expect(page.locator('#status')).toHaveText(/open|finished/);
  await screenshot(page, 'home');
  for (const name of ['Chat', 'Ticker', 'News', 'Monitor', 'Console']) {
    await expect(page.getByRole('navigation').getByRole('link', { name })).toBeVisible();
  }
});

test('when the hub cannot resume from the rendered state, the page reloads it', async ({ page, request }) => {
  // A history of one update: the id the page was rendered with is soon pruned.
  const server = await TidingsServer.start([
    '--history-max-events', '1', '--market-interval-ms', '0', '--monitor-interval-ms', '0',
  ]);
  try {
    const post = (text: string) =>
      request.post(`${server.url}/api/chat/e2e-gap`, {
        data: { name: 'srv', text },
      });
    expect((await post('rendered, then pruned')).status()).toBe(200);

    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    await page.route('**/pkg/tidings*.wasm', async (route) => {
      await gate;
      await route.continue();
    });
    await page.goto(`${server.url}/chat/e2e-gap`, { waitUntil: 'domcontentloaded' });
    await expect(log(page)).toHaveText(['srvrendered, then pruned']);
    expect((await post('newer')).status()).toBe(200);
    await page.evaluate(() => ((window as any).beforeReload = true));
    // Wait for the navigation itself: evaluating during it fails rather than retries.
    const reloaded = page.waitForEvent('framenavigated');
    release();

    // The hub answers with the gap event; the page reloads and renders what the hub has now.
    await reloaded;
    await expect(page.locator('.live-badge')).toHaveText('open');
    expect(await page.evaluate(() => (window as any).beforeReload ?? false)).toBe(false);
    await expect(log(page).filter({ hasText: 'rendered, then pruned' })).toHaveCount(0);
  } finally {
    await server.stop();
  }
});
