// The home page: the counter stream, end to end in Chromium.

import { test, expect, TidingsServer, watchConsole } from './server';

const ALL = Array.from({ length: 100 }, (_, i) => String(i + 1));

test('the server renders the heading and the empty list before any script runs', async ({
  server,
  request,
}) => {
  const response = await request.get(server.url);
  expect(response.status()).toBe(200);
  const html = await response.text();
  // Leptos leaves `<!>` hydration markers in the markup.
  expect(html).toMatch(/<h1>Real-time Updates(<!>)?<\/h1>/);
  expect(html).toMatch(/<ul id="messages">(<!>)*<\/ul>/);
  expect(html).toContain('<title>Tidings');
});

test('the list counts to 100 in order, then the status says finished', async ({ page, server }) => {
  const errors = watchConsole(page);
  await page.goto(server.url);
  await expect(page.locator('#status')).toHaveText('finished', { timeout: 30_000 });
  await expect(page.locator('#messages li')).toHaveText(ALL);
  expect(errors).toEqual([]);
});

test('with JavaScript disabled, the heading and the note show', async ({ browser, server }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(server.url);
  await expect(page.getByRole('heading', { name: 'Real-time Updates' })).toBeVisible();
  await expect(page.getByText('Live updates need JavaScript')).toBeVisible();
  await expect(page.locator('.status')).toBeHidden();
  await context.close();
});

test('with JavaScript on, the no-JavaScript note stays hidden', async ({ page, server }) => {
  await page.goto(server.url);
  await expect(page.locator('#status')).toHaveText(/open|finished/);
  await expect(page.getByText('Live updates need JavaScript')).toBeHidden();
});

test('after a server restart mid-stream the list goes on without a gap or a duplicate', async ({
  page,
}) => {
  const errors = watchConsole(page);
  const first = await TidingsServer.start(['--stream-interval-ms', '100']);
  await page.goto(first.url);
  await expect(page.locator('#messages li').nth(9)).toBeAttached();

  await first.kill();
  await expect(page.locator('#status')).toHaveText('reconnecting');
  const shown = await page.locator('#messages li').count();

  // Same port, so the browser's automatic reconnect (with Last-Event-ID) reaches it.
  const second = await TidingsServer.start(['--stream-interval-ms', '20'], first.port);
  try {
    await expect(page.locator('#status')).toHaveText('finished', { timeout: 30_000 });
    await expect(page.locator('#messages li')).toHaveText(ALL);
    expect(shown).toBeGreaterThanOrEqual(10);
    // The killed server cut a response short, and while it was down the browser logged its failed
    // reconnects; nothing else may appear.
    const expected = /ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED/;
    expect(errors.filter((e) => !expected.test(e))).toEqual([]);
  } finally {
    await second.stop();
    // Its data folder too (the second had one of its own).
    await first.stop();
  }
});
