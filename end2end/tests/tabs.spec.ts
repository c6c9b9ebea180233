// One connection per browser: the tabs of an origin share one hub stream (one tab leads and
// passes events on to the others), so a seventh tab over HTTP/1.1 does not hang, and when the
// leading tab closes another takes over without any tab missing or repeating an event.

import { APIRequestContext, Page } from '@playwright/test';
import { test, expect, log, token, watchConsole, TidingsServer } from './server';

/** Publishes a chat message straight to the hub, with its id. */
async function publishChat(request: APIRequestContext, server: TidingsServer, room: string, id: string, text: string) {
  const topic = `/chat/${room}`;
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
    form: { topic, id, data: JSON.stringify({ name: 'pub', text, at_ms: Date.now() }) },
  });
  expect(response.status()).toBe(200);
}

async function publishHeadline(request: APIRequestContext, server: TidingsServer, title: string) {
  const response = await request.post(`${server.url}/.well-known/mercure`, {
    headers: { Authorization: `Bearer ${token({ mercure: { publish: ['*'] } })}` },
    form: { topic: '/news', data: JSON.stringify({ title, at_ms: Date.now() }) },
  });
  expect(response.status()).toBe(200);
}

const leading = (page: Page) => page.evaluate(() => document.documentElement.dataset.liveLeader === 'true');

test('ten tabs of mixed pages share one connection, and a closed leader is replaced without a gap', async ({ browser, request }) => {
  // Quiet publishers: the only events are the test's (and the monitor's, to see it move).
  const server = await TidingsServer.start([
    '--market-interval-ms', '200',
    '--monitor-interval-ms', '250',
  ]);
  try {
    const context = await browser.newContext();
    const urls = [
      '/chat/tabs', '/chat/tabs', '/chat/tabs', '/ticker', '/ticker',
      '/news', '/news', '/monitor', '/chat/other', '/chat/tabs',
    ];
    const pages: Page[] = [];
    for (const url of urls) {
      const page = await context.newPage();
      await page.goto(`${server.url}${url}`);
      pages.push(page);
    }
    const errors = pages.map(watchConsole);
    // Ten tabs over HTTP/1.1, every one live: with a connection each, the seventh would hang.
    for (const page of pages) await expect(page.locator('.live-badge')).toHaveText('open');
    // The monitor counts the hub's subscribers: one, the leader's.
    const monitor = pages[7];
    await expect(monitor.locator('#metric-subscribers .value')).toHaveText('1', { timeout: 20_000 });
    // One tab leads: the first, unless a follower took over from it (a leader stalled for
    // seconds by a loaded machine is replaced, as designed).
    const leaders = await Promise.all(pages.map(leading));
    expect(leaders.filter(Boolean)).toHaveLength(1);
    const first = leaders.indexOf(true);

    // Every tab gets what its own selectors match, and nothing else.
    await publishChat(request, server, 'tabs', 'first', 'to the room');
    await publishChat(request, server, 'other', 'elsewhere', 'to the other room');
    await publishHeadline(request, server, 'Tabs share a stream');
    for (const i of [0, 1, 2, 9]) await expect(log(pages[i])).toHaveText(['pubto the room']);
    await expect(log(pages[8])).toHaveText(['pubto the other room']);
    for (const i of [5, 6]) await expect(pages[i].locator('#headlines .headline')).toHaveText(['Tabs share a stream']);
    for (const i of [3, 4]) {
      const price = pages[i].locator('#ticker tr[data-symbol="ACME"] .price');
      const before = await price.textContent();
      await expect.poll(() => price.textContent()).not.toBe(before);
    }
    const uptime = monitor.locator('#metric-uptime .value');
    const up = await uptime.textContent();
    await expect.poll(() => uptime.textContent()).not.toBe(up);

    // The leader closes mid-stream: another tab leads within 2 s, and every chat tab shows
    // the whole sequence once, in order.
    const expected = ['pubto the room'];
    const publishing = (async () => {
      for (let n = 1; n <= 40; n++) {
        await publishChat(request, server, 'tabs', `m${n}`, `message ${n}`);
        expected.push(`pubmessage ${n}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const chats = [0, 1, 2, 9].filter((i) => i !== first);
    await expect(log(pages[chats[0]])).toContainText(['pubmessage 5']);
    await pages[first].close();
    const rest = pages.filter((_, i) => i !== first);
    await expect
      .poll(async () => (await Promise.all(rest.map(leading))).filter(Boolean).length, { timeout: 2_000 })
      .toBe(1);
    await publishing;
    for (const i of chats) await expect(log(pages[i])).toHaveText(expected);
    const watcher = first === 7 ? await context.newPage() : monitor;
    if (watcher !== monitor) await watcher.goto(`${server.url}/monitor`);
    await expect(watcher.locator('#metric-subscribers .value')).toHaveText('1', { timeout: 20_000 });
    expect(errors.filter((_, i) => i !== first).flat()).toEqual([]);
  } finally {
    await server.stop();
  }
});

test('a chat tab joining a news tab while its page token is slow to come costs the news tab nothing', async ({ browser, request }) => {
  const server = await TidingsServer.start();
  try {
    const context = await browser.newContext();
    // Every page token takes 2 s: the leader widens to the chat's selectors only once it has
    // one, and its old stream must not go on meanwhile with routes read against the new ones.
    await context.route('**/api/page_token', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await route.continue();
    });
    const news = await context.newPage();
    await news.goto(`${server.url}/news`);
    await expect(news.locator('.live-badge')).toHaveText('open');
    await expect.poll(() => leading(news)).toBe(true);
    const errors = [watchConsole(news)];

    const chat = await context.newPage();
    errors.push(watchConsole(chat));
    await chat.goto(`${server.url}/chat/slow-token`);
    const titles: string[] = [];
    for (let n = 1; n <= 24; n++) {
      const title = `headline ${n}`;
      await publishHeadline(request, server, title);
      titles.unshift(title);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await expect(chat.locator('.live-badge')).toHaveText('open');
    await expect(news.locator('#headlines .headline')).toHaveText(titles);
    await publishChat(request, server, 'slow-token', 'c1', 'only this');
    await expect(log(chat)).toHaveText(['pubonly this']);
    expect(errors.flat()).toEqual([]);
  } finally {
    await server.stop();
  }
});
