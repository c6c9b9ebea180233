// A page whose stream is refused on reconnect (a proxy's 502 during a deploy) comes back by
// itself, from where it was, with nothing missed or shown twice.

import * as http from 'node:http';
import * as net from 'node:net';
import { test, expect, joinRoom, send, log, TidingsServer, FAST } from './server';

/** A reverse proxy of the test's own in front of a server; while failing, it answers every
 * request 502, as a proxy does while its upstream is being deployed. */
class FlakyProxy {
  private failing = false;
  private sockets = new Set<net.Socket>();
  private constructor(private server: http.Server, readonly url: string) {}

  static async start(target: string): Promise<FlakyProxy> {
    const upstream = new URL(target);
    let proxy: FlakyProxy | undefined;
    const server = http.createServer((req, res) => {
      if (proxy!.failing) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('bad gateway');
        return;
      }
      const forward = http.request(
        { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      res.on('close', () => forward.destroy());
      req.pipe(forward);
    });
    server.on('connection', (socket) => {
      proxy!.sockets.add(socket);
      socket.on('close', () => proxy!.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    proxy = new FlakyProxy(server, `http://127.0.0.1:${port}`);
    return proxy;
  }

  /** From now on every request gets 502, and open connections drop. */
  fail(): void {
    this.failing = true;
    for (const socket of this.sockets) socket.destroy();
  }

  pass(): void {
    this.failing = false;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

test('a page whose reconnect gets 502 comes back by itself without a gap or a duplicate', async ({ browser, request }) => {
  const server = await TidingsServer.start(FAST);
  const proxy = await FlakyProxy.start(server.url);
  try {
    const room = 'e2e-502';
    const page = await joinRoom(await browser.newContext(), `${proxy.url}/chat/${room}`, 'ann');
    await send(page, 'before the outage');
    await expect(log(page)).toHaveText(['annbefore the outage']);
    await page.evaluate(() => ((window as any).beforeOutage = true));

    proxy.fail();
    await expect(page.locator('.live-badge')).toHaveAttribute('data-status', 'reconnecting');
    // Published straight to the server while the proxy refuses the page.
    for (const text of ['during one', 'during two']) {
      const answer = await request.post(`${server.url}/api/chat/${room}`, { data: { name: 'bob', text } });
      expect(answer.status()).toBe(200);
    }
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    // The browser's own EventSource has given up by now: only the live module brings it back,
    // and says when it tries next.
    await expect(page.locator('.live-badge')).toHaveText(/^reconnecting in \d+ s$/);
    proxy.pass();

    await expect(page.locator('.live-badge')).toHaveText('open', { timeout: 40_000 });
    await expect(log(page)).toHaveText(['annbefore the outage', 'bobduring one', 'bobduring two']);
    await send(page, 'after');
    await expect(log(page)).toHaveText(['annbefore the outage', 'bobduring one', 'bobduring two', 'annafter']);
    expect(await page.evaluate(() => (window as any).beforeOutage)).toBe(true);
  } finally {
    await proxy.stop();
    await server.stop();
  }
});

test('a page whose server goes down after a long while says so and backs off until it is back', async ({ browser, request }) => {
  const first = await TidingsServer.start(FAST);
  const room = 'e2e-down';
  const context = await browser.newContext();
  const page = await joinRoom(context, `${first.url}/chat/${room}`, 'ann');
  await send(page, 'before');
  await expect(log(page)).toHaveText(['annbefore']);
  // Long enough that its end is taken for the hub's maximum lifetime or a restart, which are
  // answered by a quiet reopening at once: that one fails too, since nothing listens.
  await page.waitForTimeout(5_500);
  let tries = 0;
  context.on('request', (r) => {
    if (r.url().includes('/.well-known/mercure')) tries += 1;
  });

  await first.kill();
  await expect(page.locator('.live-badge')).toHaveAttribute('data-status', 'reconnecting');
  await expect(page.locator('.live-badge')).toHaveText(/^reconnecting in \d+ s$/);
  // Backing off: the quiet try, then pauses of about 1, 2, 4 s (not a try every 250 ms).
  await page.waitForTimeout(4_000);
  expect(tries).toBeGreaterThanOrEqual(2);
  expect(tries).toBeLessThanOrEqual(5);

  const second = await TidingsServer.start(FAST, first.port, first.dataDir);
  try {
    const answer = await request.post(`${second.url}/api/chat/${room}`, { data: { name: 'bob', text: 'while away' } });
    expect(answer.status()).toBe(200);
    await expect(page.locator('.live-badge')).toHaveText('open', { timeout: 40_000 });
    await expect(log(page)).toHaveText(['annbefore', 'bobwhile away']);
  } finally {
    await second.stop();
  }
});

test('a follower tab coming into view wakes a leader that is waiting out a long pause', async ({ browser, request }) => {
  const server = await TidingsServer.start(FAST);
  const proxy = await FlakyProxy.start(server.url);
  try {
    const room = 'e2e-wake';
    const context = await browser.newContext();
    const leader = await joinRoom(context, `${proxy.url}/chat/${room}`, 'ann');
    await expect.poll(() => leader.evaluate(() => document.documentElement.dataset.liveLeader)).toBe('true');
    const follower = await joinRoom(context, `${proxy.url}/chat/${room}`, 'bob');
    expect(await follower.evaluate(() => document.documentElement.dataset.liveLeader)).not.toBe('true');

    proxy.fail();
    // Refused again and again, the leader's pause grows: wait until it has 6 s or more to go.
    await expect(follower.locator('.live-badge')).toHaveText(/^reconnecting in ([6-9]|\d\d) s$/, { timeout: 40_000 });
    const answer = await request.post(`${server.url}/api/chat/${room}`, { data: { name: 'cat', text: 'while refused' } });
    expect(answer.status()).toBe(200);
    proxy.pass();
    // The network comes back, as the follower sees it: the leader tries at once, not in 6 s.
    await follower.evaluate(() => window.dispatchEvent(new Event('online')));
    for (const page of [follower, leader]) {
      await expect(page.locator('.live-badge')).toHaveText('open', { timeout: 4_000 });
      await expect(log(page)).toHaveText(['catwhile refused']);
    }
  } finally {
    await proxy.stop();
    await server.stop();
  }
});
