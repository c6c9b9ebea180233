// Tokens that end while the page stays: the chat's presence counts are private updates, which a
// page receives with a page token from the server. The hub ends a stream when its token does, so
// the page fetches a fresh token before then and moves its stream over from its last id. Across
// several expiries (page tokens of 3 s here) every message arrives once, in order, in every tab,
// the badge never leaves `open`, and a private presence count still arrives after them.

import { APIRequestContext, Page } from '@playwright/test';
import { test, expect, token, watchConsole, TidingsServer } from './server';

async function publishChat(request: APIRequestContext, server: TidingsServer, room: string, id: string, text: string) {
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
    form: { topic: `/chat/${room}`, id, data: JSON.stringify({ name: 'pub', text, at_ms: Date.now() }) },
  });
  expect(response.status()).toBe(200);
}

/** Publishes chat messages to `room` for `ms`, one every `every` ms, the `i`th with the id and
 * text `nth(i)` gives; returns the texts, in order. */
async function publishFor(
  request: APIRequestContext,
  server: TidingsServer,
  room: string,
  ms: number,
  every: number,
  nth: (i: number) => [string, string],
): Promise<string[]> {
  const sent: string[] = [];
  const started = Date.now();
  for (let i = 0; Date.now() - started < ms; i++) {
    const [id, text] = nth(i);
    sent.push(text);
    await publishChat(request, server, room, id, text);
    await new Promise((r) => setTimeout(r, every));
  }
  return sent;
}

/** Every value the badge's `data-status` takes from now on. */
async function recordStatus(page: Page) {
  await page.evaluate(() => {
    const badge = document.querySelector('.live-badge')!;
    const seen: string[] = [badge.getAttribute('data-status') ?? ''];
    (window as unknown as { statuses: string[] }).statuses = seen;
    new MutationObserver(() => seen.push(badge.getAttribute('data-status') ?? '')).observe(badge, {
      attributes: true,
      attributeFilter: ['data-status'],
    });
  });
}

const statuses = (page: Page) => page.evaluate(() => (window as unknown as { statuses: string[] }).statuses);
const messages = (page: Page) => page.locator('#chat-log .message .text').allTextContents();

test('a chat open across two token expiries gets every message once and stays open', async ({ browser, request }) => {
  const server = await TidingsServer.start(['--page-token-lifetime', '3s']);
  try {
    const context = await browser.newContext();
    // The tokens the pages subscribed with, and the page tokens the server gave.
    const subscribedWith = new Set<string>();
    let issued = 0;
    context.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname === '/.well-known/mercure' && url.searchParams.has('authorization')) {
        subscribedWith.add(url.searchParams.get('authorization')!);
      }
      if (url.pathname === '/api/page_token') issued += 1;
    });
    // Two tabs: they share one stream, which carries the page token.
    const pages: Page[] = [];
    for (let i = 0; i < 2; i++) {
      const page = await context.newPage();
      await page.goto(`${server.url}/chat/tokens`);
      await expect(page.locator('.live-badge')).toHaveText('open');
      pages.push(page);
    }
    const errors = pages.map(watchConsole);
    for (const page of pages) await recordStatus(page);

    // Messages published over 8 s: each page token (3 s) ends at least twice meanwhile.
    const sent = await publishFor(request, server, 'tokens', 8_000, 200, (i) => [`tok-${i}`, `m${i}`]);
    for (const page of pages) {
      await expect.poll(() => messages(page), { timeout: 10_000 }).toEqual(sent);
    }
    // The stream moved to fresh tokens (at least two after the first), fetched from the server.
    expect(subscribedWith.size).toBeGreaterThanOrEqual(3);
    expect(issued).toBeGreaterThanOrEqual(3);
    for (const page of pages) {
      expect(new Set(await statuses(page))).toEqual(new Set(['open']));
      await expect(page.locator('.live-badge')).toHaveText('open');
    }

    // The presence count is private: it still comes, with the current token, when a visitor
    // in another browser joins (the shared stream and that one: two subscribers).
    const other = await browser.newContext();
    const visitor = await other.newPage();
    await visitor.goto(`${server.url}/chat/tokens`);
    await expect(visitor.locator('.live-badge')).toHaveText('open');
    for (const page of pages) await expect(page.locator('#presence')).toHaveText('2');
    await other.close();
    for (const page of pages) await expect(page.locator('#presence')).toHaveText('1');

    for (const list of errors) expect(list).toEqual([]);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a stream ended by the hub\'s maximum lifetime comes back at once, quietly, missing nothing', async ({ browser, request }) => {
  const server = await TidingsServer.start(['--max-stream-lifetime', '6s']);
  try {
    const context = await browser.newContext();
    let subscriptions = 0;
    context.on('request', (r) => {
      if (new URL(r.url()).pathname === '/.well-known/mercure') subscriptions += 1;
    });
    const page = await context.newPage();
    await page.goto(`${server.url}/chat/lifetime`);
    await expect(page.locator('.live-badge')).toHaveText('open');
    const errors = watchConsole(page);
    await recordStatus(page);
    const before = subscriptions;
    // 13 s of messages: the stream (6 s, ending in its last tenth) ends twice meanwhile.
    const sent = await publishFor(request, server, 'lifetime', 13_000, 250, (i) => [`life-${i}`, `l${i}`]);
    await expect.poll(() => messages(page), { timeout: 10_000 }).toEqual(sent);
    expect(subscriptions - before).toBeGreaterThanOrEqual(2);
    expect(new Set(await statuses(page))).toEqual(new Set(['open']));
    expect(errors).toEqual([]);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('presence counts are private: a subscription without a token does not get them', async ({ request }) => {
  const server = await TidingsServer.start();
  try {
    // A raw subscriber to the room's presence topic, anonymous, and one with a page token.
    const presence = async (authorization?: string) => {
      const query = new URLSearchParams({ topic: '/chat/quiet/presence' });
      if (authorization) query.set('authorization', authorization);
      const controller = new AbortController();
      const response = await fetch(`${server.url}/.well-known/mercure?${query}`, { signal: controller.signal });
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      let text = '';
      const reading = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += new TextDecoder().decode(value);
        }
      })().catch(() => {});
      return { text: () => text, close: () => { controller.abort(); return reading; } };
    };
    const issued = await request.post(`${server.url}/api/page_token`);
    expect(issued.status()).toBe(200);
    const pageToken = (await issued.json()).token as string;
    const anonymous = await presence();
    const holder = await presence(pageToken);
    // Someone enters the room: its count is published.
    const room = await fetch(`${server.url}/.well-known/mercure?topic=${encodeURIComponent('/chat/quiet')}`);
    await expect.poll(holder.text, { timeout: 5_000 }).toContain('"present":1');
    expect(anonymous.text()).not.toContain('present');
    await room.body?.cancel();
    await Promise.all([anonymous.close(), holder.close()]);
  } finally {
    await server.stop();
  }
});

test('the console stops at its pasted token\'s exp and says so, rather than knocking with it again', async ({ page, server }) => {
  const subscriptions: string[] = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/.well-known/mercure') subscriptions.push(r.url());
  });
  await page.goto(`${server.url}/console`);
  const exp = Math.floor(Date.now() / 1000) + 3;
  await page.fill('#sub-selectors', '/console/expiring');
  await page.fill('#sub-token', token({ mercure: { subscribe: ['/console/expiring'] }, exp }));
  await page.click('#console-subscribe button');
  await expect(page.locator('.live-badge')).toHaveText('open');
  await expect(page.locator('.live-badge')).toHaveText('token expired', { timeout: 8_000 });
  // Two seconds more: no new attempt with the dead token.
  const attempts = subscriptions.length;
  await page.waitForTimeout(2_000);
  expect(subscriptions.length).toBe(attempts);
  await expect(page.locator('.live-badge')).toHaveText('token expired');
});

test('the console takes a pasted token whose exp is months away', async ({ page, server, request }) => {
  // Beyond the longest wait of a browser's timer (about 24.8 days).
  const exp = Math.floor(Date.now() / 1000) + 90 * 24 * 3600;
  const errors = watchConsole(page);
  await page.goto(`${server.url}/console`);
  await expect(page.locator('main')).toHaveAttribute('data-hydrated', 'true');
  await page.fill('#sub-selectors', '/console/far');
  await page.fill('#sub-token', token({ mercure: { subscribe: ['/console/far'] }, exp }));
  await page.click('#console-subscribe button');
  await expect(page.locator('.live-badge')).toHaveText('open');
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
    form: { topic: '/console/far', id: 'far-1', data: 'private and far', private: 'on' },
  });
  expect(response.status()).toBe(200);
  await expect(page.locator('#console-events .event').first().locator('.data')).toHaveText('private and far');
  expect(errors).toEqual([]);
});
